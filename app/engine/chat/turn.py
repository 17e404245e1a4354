"""One model turn: stream a chat completion and translate its chunks into Responses events.

Chat chunks carry reasoning deltas, text deltas and tool-call deltas keyed by index;
Responses events speak of output items (a `reasoning` item with one `reasoning_text` part, a
`message` with one `output_text` part, or `function_call`s), each opened with
`output_item.added` and closed with `output_item.done`. A turn ends exactly once, with one
outcome: completed, incomplete (the token limit), or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

from app import ids
from app.engine.approvals import approval_request, is_approval_request
from app.engine.chat.client import Chunk, UpstreamError
from app.engine.chat.logprobs import chunk_logprobs, event_logprobs
from app.engine.chat.reasoning import OpenReasoning, reasoning_delta
from app.engine.chat.think_tags import Piece, ThinkTagSplitter
from app.engine.chat.usage import responses_usage
from app.engine.events import Emitter
from app.engine.items import is_call, new_message, output_text_part
from app.shapes import ErrorInfo, Item, JsonObject, Usage
from app.statuses import StepStatus

log = logging.getLogger(__name__)

# Chat finish reasons that mean the model was cut short, and how Responses names them.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


# (delta, done) event types for the arguments of each kind of call item. An approval request
# has none: OpenAI shows it whole, when its item is done.
_ARGUMENT_EVENTS = {
    "function_call": (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ),
    "mcp_call": ("response.mcp_call_arguments.delta", "response.mcp_call_arguments.done"),
}


@dataclass
class StreamedTurn:
    """What streaming one model turn produced: its items, usage and one outcome."""

    outcome: StepStatus  # completed | incomplete | failed
    items: list[Item]
    usage: Usage | None = None
    usage_missing: bool = False
    error: ErrorInfo | None = None
    incomplete_reason: str | None = None
    # Failed after the upstream had sent something: the turn cannot be retried unseen.
    cut_after_first_chunk: bool = False

    @property
    def calls(self) -> list[Item]:
        """The tool calls the model made: `function_call` and `mcp_call` items, in order."""
        return [item for item in self.items if is_call(item)]


@dataclass
class _OpenMessage:
    item: Item
    output_index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[JsonObject] = field(default_factory=list)  # in the part's shape

    @property
    def part_at(self) -> JsonObject:
        """Where its one `output_text` part is, as every part and text event names it."""
        return {"item_id": self.item["id"], "output_index": self.output_index, "content_index": 0}


@dataclass
class _OpenCall:
    item: Item
    output_index: int
    arguments: list[str] = field(default_factory=list)


class TurnTranslator:
    """Turns chunks into events; remembers the items it opened so it can close them."""

    def __init__(
        self,
        emitter: Emitter,
        first_output_index: int,
        on_item_done: Callable[[list[Item]], Awaitable[None]] | None = None,
        mcp_tools: dict[str, str] | None = None,
        approval_tools: frozenset[str] = frozenset(),
        logprobs: bool = False,
        think_tags: bool = False,
    ) -> None:
        self.emitter = emitter
        # Whether the request's `include` asked for the text's token log probabilities.
        self.logprobs = logprobs
        # Ones that came in a chunk with no text go with the next text delta.
        self.held_logprobs: list[JsonObject] = []
        # Names of MCP tools offered, with their server's label: their calls are `mcp_call`s.
        self.mcp_tools = mcp_tools or {}
        # Those of them whose calls wait for approval: they are `mcp_approval_request`s.
        self.approval_tools = approval_tools
        # Told the finished items each time one more is done, so progress can be persisted.
        self.on_item_done = on_item_done
        self.next_output_index = first_output_index
        self.items: list[Item] = []  # finished items, in output order
        self.reasoning: OpenReasoning | None = None
        self.message: _OpenMessage | None = None
        self.calls: dict[int, _OpenCall] = {}  # by the upstream's tool-call index
        self.closed_call_indexes: set[int] = set()
        self.chunks_seen = 0
        self.content_seen = False
        self.finish_reason: str | None = None
        self.raw_usage: JsonObject | None = None  # the upstream's, before normalising
        # Splits `<think>…</think>` reasoning off the content, when the setting asks for it.
        self.think_tags = ThinkTagSplitter() if think_tags else None

    async def on_chunk(self, chunk: Chunk) -> None:
        self.chunks_seen += 1
        if isinstance(chunk.get("usage"), dict):
            self.raw_usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not part of the Responses API
            delta = choice.get("delta") or {}
            if self.logprobs:
                self.held_logprobs += chunk_logprobs(choice)
            reasoning = reasoning_delta(delta)
            if reasoning:
                await self._on_reasoning(reasoning)
            if delta.get("content"):
                await self._on_content(delta["content"])
            for call_delta in delta.get("tool_calls") or []:
                await self._on_tool_call(call_delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    async def _on_content(self, content: str) -> None:
        if self.think_tags is None:
            await self._on_text(content)
            return
        await self._on_pieces(self.think_tags.feed(content))

    async def finish_content(self) -> None:
        """The content has ended: what the think-tag splitter still holds comes out."""
        if self.think_tags is not None:
            await self._on_pieces(self.think_tags.finish())

    async def _on_pieces(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if piece.kind == "reasoning":
                await self._on_reasoning(piece.text)
            else:
                await self._on_text(piece.text)

    async def _on_reasoning(self, text: str) -> None:
        self.content_seen = True
        self.held_logprobs = []  # those of reasoning tokens: only output text shows them
        if self.reasoning is None:
            # Reasoning after text or calls (rare) starts an item of its own after them.
            await self._close_message(StepStatus.COMPLETED)
            await self._close_calls(StepStatus.COMPLETED)
            self.reasoning = await OpenReasoning.open(self.emitter, self._claim_index())
        await self.reasoning.add(self.emitter, text)

    async def _close_reasoning(self, status: str) -> None:
        reasoning, self.reasoning = self.reasoning, None
        if reasoning is not None:
            await self._item_done(await reasoning.close(self.emitter, status))

    async def _on_text(self, text: str) -> None:
        self.content_seen = True
        if self.message is None:
            await self._close_reasoning(StepStatus.COMPLETED)
            await self._close_calls(StepStatus.COMPLETED)
            await self._open_message()
        assert self.message is not None
        logprobs, self.held_logprobs = self.held_logprobs, []
        self.message.text.append(text)
        self.message.logprobs += logprobs
        await self.emitter.emit(
            "response.output_text.delta",
            **self.message.part_at,
            delta=text,
            logprobs=event_logprobs(logprobs),
        )

    async def _open_message(self) -> None:
        item = new_message()
        self.message = _OpenMessage(item=item, output_index=self._claim_index())
        await self.emitter.emit(
            "response.output_item.added", output_index=self.message.output_index, item=item
        )
        await self.emitter.emit(
            "response.content_part.added", **self.message.part_at, part=output_text_part("")
        )

    async def _on_tool_call(self, call_delta: JsonObject) -> None:
        self.content_seen = True
        index = call_delta.get("index", 0)
        function = call_delta.get("function") or {}
        call = self.calls.get(index)
        if call is None and index in self.closed_call_indexes:
            # Upstreams stream parallel calls one after another; an interleaved one would
            # have to reopen an item that was already reported done.
            raise UpstreamError(f"upstream sent more of tool call {index} after a later one")
        if call is None:
            # Responses shows each item finished before the next begins: the reasoning and
            # the text before the calls, and every earlier call.
            await self._close_reasoning(StepStatus.COMPLETED)
            await self._close_message(StepStatus.COMPLETED)
            await self._close_calls(StepStatus.COMPLETED)
            item = self._new_call_item(call_delta.get("id"), function.get("name") or "")
            call = self.calls[index] = _OpenCall(item=item, output_index=self._claim_index())
            await self.emitter.emit(
                "response.output_item.added", output_index=call.output_index, item=dict(item)
            )
        elif function.get("name") and not call.item["name"]:
            call.item["name"] = function["name"]
        if function.get("arguments"):
            call.arguments.append(function["arguments"])
            if call.item["type"] in _ARGUMENT_EVENTS:
                await self.emitter.emit(
                    _ARGUMENT_EVENTS[call.item["type"]][0],
                    item_id=call.item["id"],
                    output_index=call.output_index,
                    delta=function["arguments"],
                )

    def _new_call_item(self, call_id: str | None, name: str) -> Item:
        if name in self.approval_tools:
            return approval_request(self.mcp_tools[name], name)
        if name in self.mcp_tools:
            return {
                "id": ids.new_id("mcp"),
                "type": "mcp_call",
                "status": "in_progress",
                "server_label": self.mcp_tools[name],
                "name": name,
                "arguments": "",
                "output": None,
                "error": None,
            }
        return {
            "id": ids.function_call_id(),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id or ids.new_id("call"),
            "name": name,
        }

    def _claim_index(self) -> int:
        index = self.next_output_index
        self.next_output_index += 1
        return index

    async def _close_message(self, status: str) -> None:
        message, self.message = self.message, None
        if message is None:
            return
        text = "".join(message.text)
        part = output_text_part(text, message.logprobs)
        await self.emitter.emit(
            "response.output_text.done",
            **message.part_at,
            text=text,
            logprobs=event_logprobs(message.logprobs),
        )
        await self.emitter.emit("response.content_part.done", **message.part_at, part=part)
        done = {**message.item, "status": status, "content": [part]}
        await self.emitter.emit(
            "response.output_item.done", output_index=message.output_index, item=done
        )
        await self._item_done(done)

    async def _close_calls(self, status: str) -> None:
        calls, self.calls = self.calls, {}
        self.closed_call_indexes.update(calls)
        for call in sorted(calls.values(), key=lambda c: c.output_index):
            arguments = "".join(call.arguments)
            if call.item["type"] in _ARGUMENT_EVENTS:
                await self.emitter.emit(
                    _ARGUMENT_EVENTS[call.item["type"]][1],
                    item_id=call.item["id"],
                    output_index=call.output_index,
                    name=call.item["name"],
                    arguments=arguments,
                )
            if call.item["type"] == "mcp_call" and status == StepStatus.COMPLETED:
                # Not done yet: the loop runs the call and completes the item in place.
                self.items.append({**call.item, "arguments": arguments})
                continue
            done = {**call.item, "status": status, "arguments": arguments}
            if is_approval_request(done) and status == StepStatus.COMPLETED:
                del done["status"]  # a complete approval request has none (see its constructor)
            await self.emitter.emit(
                "response.output_item.done", output_index=call.output_index, item=done
            )
            await self._item_done(done)

    async def _item_done(self, item: Item) -> None:
        self.items.append(item)
        # An approval request is the one item with no status once complete.
        if (
            self.on_item_done is not None
            and item.get("status", StepStatus.COMPLETED) == StepStatus.COMPLETED
        ):
            await self.on_item_done(list(self.items))

    async def close_open_items(self, status: str) -> None:
        """Close what is open with the given item status.

        At most one kind is open at a time: each of reasoning, text and calls closes the others.
        """
        await self._close_reasoning(status)
        await self._close_message(status)
        await self._close_calls(status)

    def partial_items(self) -> list[Item]:
        """What an interrupted turn leaves: finished items, then open ones marked incomplete."""
        items = list(self.items)
        if self.reasoning is not None:
            items.append(self.reasoning.with_text(StepStatus.INCOMPLETE))
        if self.message is not None:
            part = output_text_part("".join(self.message.text), self.message.logprobs)
            items.append({**self.message.item, "status": StepStatus.INCOMPLETE, "content": [part]})
        for call in sorted(self.calls.values(), key=lambda c: c.output_index):
            items.append(
                {**call.item, "status": StepStatus.INCOMPLETE, "arguments": "".join(call.arguments)}
            )
        return items


async def run_turn(
    chunks: AsyncGenerator[Chunk],
    translator: TurnTranslator,
    ready: asyncio.Future[None] | None = None,
) -> StreamedTurn:
    """Consume a turn's chunk stream to its end and settle its one outcome; with `ready`,
    no chunk is handled before it is done (the turn's step row, written meanwhile).

    The stream is closed on the way out, whatever the way: a cancelled turn hangs up on the
    upstream at once instead of whenever the generator is collected.
    """
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if ready is not None:
                    await asyncio.shield(ready)  # a cancelled turn still writes its row
                    ready = None
                await translator.on_chunk(chunk)
        await translator.finish_content()
    except UpstreamError as exc:
        await translator.finish_content()
        await translator.close_open_items(StepStatus.INCOMPLETE)
        return StreamedTurn(
            outcome=StepStatus.FAILED,
            items=translator.items,
            usage=responses_usage(translator.raw_usage),
            error={"code": exc.code, "message": exc.message},
            cut_after_first_chunk=translator.chunks_seen > 0,
        )
    return await _settle(translator)


async def _settle(translator: TurnTranslator) -> StreamedTurn:
    usage = responses_usage(translator.raw_usage)
    reason = translator.finish_reason
    if reason is None:
        await translator.close_open_items(StepStatus.INCOMPLETE)
        message = (
            "empty upstream stream"
            if translator.chunks_seen == 0
            else "stream ended without stop event"
        )
        return StreamedTurn(
            outcome=StepStatus.FAILED,
            items=translator.items,
            usage=usage,
            error={"code": "upstream_error", "message": message},
            cut_after_first_chunk=translator.chunks_seen > 0,
        )
    usage_missing = usage is None and translator.content_seen
    if usage_missing:
        log.warning("upstream sent no usage; tokens for this turn are not counted")
    incomplete_reason = INCOMPLETE_REASONS.get(reason)
    status = StepStatus.INCOMPLETE if incomplete_reason else StepStatus.COMPLETED
    await translator.close_open_items(status)
    return StreamedTurn(
        outcome=status,
        items=translator.items,
        usage=usage,
        usage_missing=usage_missing,
        incomplete_reason=incomplete_reason,
    )
