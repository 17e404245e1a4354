"""The model's reasoning in a turn: read from chat deltas, streamed as a `reasoning` item.

Upstreams with a reasoning parser send the reasoning apart from the content, under one of two
names; Ferry shows it as OpenAI's Responses API shows raw reasoning text: a `reasoning` item
with one `reasoning_text` part, streamed as `response.reasoning_text.delta` events between
the part's `content_part.added` and `content_part.done`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.engine.events import Emitter
from app.engine.items import new_reasoning, reasoning_text_part
from app.shapes import Item, JsonObject

# `reasoning_content`: vLLM's reasoning parsers, DeepSeek. `reasoning`: newer vLLM,
# OpenRouter, Ollama's OpenAI endpoint. A delta carries one or the other.
_REASONING_KEYS = ("reasoning_content", "reasoning")


def reasoning_delta(delta: JsonObject) -> str | None:
    """The reasoning text a chat delta (or message) carries, if any."""
    for key in _REASONING_KEYS:
        text = delta.get(key)
        if isinstance(text, str) and text:
            return text
    return None


@dataclass
class OpenReasoning:
    """A reasoning item added to the stream and not done yet."""

    item: Item
    output_index: int
    text: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, emitter: Emitter, output_index: int) -> OpenReasoning:
        """Announce a new reasoning item and its (empty) text part."""
        opened = cls(item=new_reasoning(), output_index=output_index)
        await emitter.emit(
            "response.output_item.added", output_index=output_index, item=opened.item
        )
        await emitter.emit(
            "response.content_part.added", **opened.part_at, part=reasoning_text_part("")
        )
        return opened

    @property
    def part_at(self) -> JsonObject:
        """Where its one `reasoning_text` part is, as every part and text event names it."""
        return {"item_id": self.item["id"], "output_index": self.output_index, "content_index": 0}

    async def add(self, emitter: Emitter, text: str) -> None:
        self.text.append(text)
        await emitter.emit("response.reasoning_text.delta", **self.part_at, delta=text)

    async def close(self, emitter: Emitter, status: str) -> Item:
        """Close the part and the item with `status`; the item as done."""
        done = self.with_text(status)
        [part] = done["content"]
        await emitter.emit("response.reasoning_text.done", **self.part_at, text=part["text"])
        await emitter.emit("response.content_part.done", **self.part_at, part=part)
        await emitter.emit("response.output_item.done", output_index=self.output_index, item=done)
        return done

    def with_text(self, status: str) -> Item:
        """The item as it stands, with `status` and the text so far."""
        return {**self.item, "status": status, "content": [reasoning_text_part("".join(self.text))]}
