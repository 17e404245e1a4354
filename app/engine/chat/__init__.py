"""The chat-completions dialect: everything that knows that upstream's wire format.

`request` builds the upstream request body, `messages` translates Responses items into chat
messages, `client` streams completions from the upstream, `turn` translates its chunks into
Responses events, and `usage` normalises its token counts. A second upstream dialect would
be a sibling package with the same parts.
"""
