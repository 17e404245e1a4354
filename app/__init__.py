"""Ferry: a durable OpenAI Responses API in front of a chat-completions upstream."""
