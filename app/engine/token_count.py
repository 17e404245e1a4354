"""Counting the tokens of what a request sends upstream: the upstream's own count where it
offers one (vLLM's `/tokenize`), else an estimate.

The estimate reads the chat messages as they are sent: a quarter token per UTF-8 byte of
each message's text (its content, its reasoning, its tool calls' names and arguments),
rounded up, plus MESSAGE_OVERHEAD_TOKENS a message for its role and framing, IMAGE_TOKENS an
image, and REPLY_PRIMING_TOKENS once for the start of the reply; tools add a quarter token
per byte of their JSON. It is a guess (tokenizers differ by model and language), but it is
never 0 for a message and never falls when a message or any text is added.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from app.engine.chat.client import UpstreamClient, UpstreamError
from app.engine.chat.messages import ChatMessage
from app.shapes import JsonObject

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3
# OpenAI's count for a 1024x1024 image at high detail; an image's size is not known here.
IMAGE_TOKENS = 765
# Statuses that say the upstream has no `/tokenize` at all (rather than that it failed).
_NO_SUCH_ROUTE = frozenset({404, 405})


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool  # counted by the upstream's tokenizer, not estimated


def estimate_tokens(messages: list[ChatMessage], tools: list[JsonObject] | None = None) -> int:
    """The estimate described above; 0 only when there is nothing at all."""
    total = sum(_message_tokens(message) for message in messages)
    if messages:
        total += REPLY_PRIMING_TOKENS
    if tools:
        total += _text_tokens(json.dumps(tools, ensure_ascii=False))
    return total


def _message_tokens(message: ChatMessage) -> int:
    texts: list[str] = []
    images = 0
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        texts.append(reasoning)
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        texts += [str(function.get("name") or ""), str(function.get("arguments") or "")]
    return MESSAGE_OVERHEAD_TOKENS + images * IMAGE_TOKENS + _text_tokens("".join(texts))


def _text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


class TokenCounter:
    """Counts with the upstream's `/tokenize` when it has one, else estimates.

    An upstream that answers `/tokenize` with 404 or 405 has none: this process does not ask
    it again. Any other failure falls back to the estimate for that count only.
    """

    def __init__(self, upstream: UpstreamClient) -> None:
        self._upstream = upstream
        self._tokenize_missing = False

    async def count(
        self, model: str | None, messages: list[ChatMessage], tools: list[JsonObject] | None
    ) -> TokenCount:
        if messages and not self._tokenize_missing:
            counted = await self._tokenized(model, messages, tools)
            if counted is not None:
                return TokenCount(max(counted, 1), exact=True)
        return TokenCount(estimate_tokens(messages, tools), exact=False)

    async def _tokenized(
        self, model: str | None, messages: list[ChatMessage], tools: list[JsonObject] | None
    ) -> int | None:
        body: JsonObject = {"messages": messages}
        if model is not None:
            body["model"] = model
        if tools:
            body["tools"] = tools
        try:
            answer = await self._upstream.tokenize(body)
        except UpstreamError as exc:
            if exc.status_code in _NO_SUCH_ROUTE:
                log.info("the upstream has no /tokenize; token counts are estimated")
                self._tokenize_missing = True
            else:
                log.warning("could not count tokens upstream; estimating", extra=_why(exc))
            return None
        count: Any = answer.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            log.warning("the upstream's /tokenize answer has no count; estimating")
            return None
        return count


def _why(exc: UpstreamError) -> JsonObject:
    return {"status": exc.status_code, "error": exc.message}
