"""Reasoning written inline as `<think>…</think>` at the start of a model's content.

Models served without a reasoning parser (DeepSeek R1 and Qwen3 on a plain endpoint, many
llama.cpp setups) put their reasoning in the content itself, opened by a `<think>` before any
other text. `ThinkTagSplitter` splits streamed content into that reasoning and the answer
after `</think>`. Chunks may end anywhere, inside a tag too, so text that could still turn
into a tag is held back until it is known to be one or not; whatever is not a tag comes out
unchanged, and how the content was split into chunks never changes what comes out.
"""

from __future__ import annotations

import enum
from typing import Literal, NamedTuple

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class Piece(NamedTuple):
    """A run of content that is either reasoning or answer text."""

    kind: Literal["reasoning", "text"]
    text: str


class _State(enum.Enum):
    START = "start"  # nothing but whitespace yet: a `<think>` may still open reasoning
    REASONING = "reasoning"  # inside `<think>`, until `</think>`
    TEXT = "text"  # the answer: everything from here on is passed through


class ThinkTagSplitter:
    """Feed it content as it arrives; `finish` at the end of the stream.

    Only a `<think>` at the very start of the content (after optional whitespace) opens
    reasoning, as the models write it; a `<think>` anywhere else is text. Whitespace right
    after either tag is dropped (models write `<think>\\n` and `</think>\\n\\n`). Without a
    `</think>`, everything after `<think>` is reasoning.
    """

    def __init__(self) -> None:
        self._state = _State.START
        self._held = ""  # text that may be the start of a tag
        self._after_tag = False  # drop whitespace until the first other character

    def feed(self, text: str) -> list[Piece]:
        pending, self._held = self._held + text, ""
        if self._state is _State.START:
            pending = self._from_start(pending)
            if self._state is _State.START:
                return []
        if self._state is _State.REASONING:
            return self._reasoning(pending)
        return self._piece("text", pending)

    def finish(self) -> list[Piece]:
        """What is still held when the content ends: a tag never completed is plain text
        at the start, and reasoning inside `<think>`."""
        held, self._held = self._held, ""
        kind: Literal["reasoning", "text"] = (
            "reasoning" if self._state is _State.REASONING else "text"
        )
        self._state = _State.TEXT
        return [Piece(kind, held)] if held else []

    def _from_start(self, pending: str) -> str:
        """Decide whether the content opens with `<think>`; what is left to split."""
        stripped = pending.lstrip()
        if len(stripped) < len(OPEN_TAG) and OPEN_TAG.startswith(stripped):
            self._held = pending  # whitespace, or a tag not finished yet
            return ""
        if stripped.startswith(OPEN_TAG):
            self._state = _State.REASONING
            self._after_tag = True
            return stripped[len(OPEN_TAG) :]
        self._state = _State.TEXT
        return pending

    def _reasoning(self, pending: str) -> list[Piece]:
        end = pending.find(CLOSE_TAG)
        if end == -1:
            keep = _partial_tag_at_end(pending, CLOSE_TAG)
            self._held = pending[len(pending) - keep :] if keep else ""
            return self._piece("reasoning", pending[: len(pending) - keep])
        pieces = self._piece("reasoning", pending[:end])
        self._state = _State.TEXT
        self._after_tag = True
        return pieces + self._piece("text", pending[end + len(CLOSE_TAG) :])

    def _piece(self, kind: Literal["reasoning", "text"], text: str) -> list[Piece]:
        if self._after_tag:
            text = text.lstrip()
            self._after_tag = not text
        return [Piece(kind, text)] if text else []


def _partial_tag_at_end(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag` (0 if none)."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0
