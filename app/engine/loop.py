"""The response loop, written once for every mode: it knows nothing of HTTP or queues.

It builds the conversation, runs model turns as persisted steps, emits events to a sink, and
commits the terminal state before announcing it, so a client that saw `response.completed`
always finds the same response with GET.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.engine.chat_messages import to_chat_messages
from app.engine.chat_request import chat_completion_body
from app.engine.events import TERMINAL_EVENT_BY_STATUS, Emitter, EventSink
from app.engine.resource import response_object
from app.engine.run_state import ABANDONED, Ending, RunState, TurnRecord, call_key
from app.engine.tool_steps import ToolSteps
from app.engine.tools.http_tool import HttpToolRunner
from app.engine.tools.mcp import mcp_servers, offered_functions
from app.engine.tools.registry import ToolRegistry
from app.engine.turn import TurnTranslator, run_turn
from app.engine.upstream import UpstreamClient
from app.engine.usage import add_usage
from app.logs import current_response_id
from app.store.responses import ResponseStore, StoredResponse

log = logging.getLogger(__name__)

# Cancel a run with this message to leave its response running for another process.
HAND_BACK = "hand back"


@dataclass(frozen=True)
class ToolOffer:
    """The server-side tools offered to the model next to the client's, for every turn."""

    functions: list[dict[str, Any]]  # registered HTTP tools and MCP tools, as functions
    mcp_labels: dict[str, str]  # MCP tool name -> its server's label


class ResponseLoop:
    def __init__(
        self,
        store: ResponseStore,
        upstream: UpstreamClient,
        settings: Settings,
        *,
        tools: ToolRegistry | None = None,
        tool_runner: HttpToolRunner | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.tools = tools or ToolRegistry()
        self.tool_steps = ToolSteps(
            store, self.tools, tool_runner or HttpToolRunner(), mcp_timeout_s=settings.mcp_timeout_s
        )

    async def run(
        self,
        stored: StoredResponse,
        sink: EventSink,
        *,
        next_sequence_number: int = 0,
        resume: bool = False,
        hand_back_on_cancel: bool = False,
        redo_cut_turns: bool = False,
    ) -> StoredResponse:
        """Run a response to a terminal state and return the final row.

        Events are numbered from `next_sequence_number`: a background stream's log already
        holds `response.created`, written when the response was accepted.
        With `resume`, the steps already persisted are taken as done and the loop carries on
        after the last finished one; steps cut off mid-way are redone.
        Cancelling the task running this ends the response `cancelled` (a client gone, a
        cancel request) — unless `hand_back_on_cancel`, when the response is left running
        for another attempt (a worker shutting down). Any other failure ends it `failed`.
        With `redo_cut_turns`, a model turn the upstream cuts off after its first tokens is
        redone (its items closed `incomplete` in the stream), up to UPSTREAM_MAX_ATTEMPTS.
        """
        token = current_response_id.set(stored.id)
        emitter = Emitter(sink, next_sequence_number)
        state = RunState()
        try:
            running = await self.store.mark_in_progress(stored.id)
            if running is None:  # it ended (e.g. was cancelled) before the loop started
                return await self._reload(stored)
            if resume:
                state = await self._restore(running)
            state.redo_cut_turns = redo_cut_turns
            snapshot = response_object(running, state.output)
            if emitter.next_sequence_number == 0:
                await emitter.emit("response.created", response=snapshot)
            await emitter.emit("response.in_progress", response=snapshot)
            ending = await self._steps(running, emitter, state)
            return await self._finish(running, emitter, state, ending)
        except asyncio.CancelledError as cancelled:
            if not (hand_back_on_cancel or HAND_BACK in cancelled.args):
                await asyncio.shield(self._finish_cancelled(stored, state))
            raise
        except Exception:
            log.exception("response loop crashed")
            ending = Ending("failed", error={"code": "server_error", "message": "internal error"})
            return await asyncio.shield(self._finish(stored, emitter, state, ending))
        finally:
            current_response_id.reset(token)

    async def _restore(self, stored: StoredResponse) -> RunState:
        """The state the persisted steps leave; steps cut off mid-way are marked abandoned."""
        state, cut = RunState.from_steps(await self.store.steps(stored.id))
        for step in cut:
            await self.store.finish_step(
                stored.id,
                step.ordinal,
                status="cancelled",
                result={"items": []},
                usage=None,
                error=ABANDONED,
            )
        if cut or state.model_turns:
            log.info(
                "resuming",
                extra={"steps_done": state.next_ordinal - len(cut), "steps_cut": len(cut)},
            )
        return state

    async def _steps(self, stored: StoredResponse, emitter: Emitter, state: RunState) -> Ending:
        """Model turns and server-side tool calls, until an answer, a client call or a limit."""
        try:
            async with asyncio.timeout(self.settings.response_timeout_s):
                return await self._turns(stored, emitter, state)
        except TimeoutError:
            message = f"the response took longer than {self.settings.response_timeout_s:g}s"
            return Ending("failed", error={"code": "timeout", "message": message})

    async def _turns(self, stored: StoredResponse, emitter: Emitter, state: RunState) -> Ending:
        """Model turns and their server-side calls, carrying on from whatever `state` holds."""
        request = stored.request
        conversation = await self._conversation(stored)
        servers = mcp_servers(request)
        unlisted = [server for server in servers if server.label not in state.mcp_listed]
        if unlisted:
            failure = await self.tool_steps.list_mcp_tools(stored, emitter, state, unlisted)
            if failure is not None:
                return Ending("failed", error={"code": "mcp_error", "message": failure})
        mcp_offer = offered_functions([state.mcp_listed[server.label] for server in servers])
        functions = self.tools.offered_to(request)
        if request.get("tool_choice") != "none":
            functions += [function for _, function in mcp_offer.values()]
        offer = ToolOffer(
            functions=functions,
            mcp_labels={name: label for name, (label, _) in mcp_offer.items()},
        )
        by_label = {server.label: server for server in servers}
        max_tool_calls = request.get("max_tool_calls")
        while True:
            turn = state.last_turn
            answered = turn is not None and all(call_key(c) in state.answered for c in turn.calls)
            if turn is None or (turn.calls and answered):
                if turn is not None and any(call_key(c) in state.skipped for c in turn.calls):
                    return Ending("incomplete", incomplete_details={"reason": "max_tool_calls"})
                if state.model_turns >= self.settings.max_model_turns:
                    return Ending("incomplete", incomplete_details={"reason": "max_turns"})
                messages = to_chat_messages(
                    request.get("instructions"), conversation + state.output
                )
                turn = await self._model_turn(stored, emitter, state, messages, offer)
            ending = turn.ending()
            if ending is not None:
                return ending
            pending = [call for call in turn.calls if call_key(call) not in state.answered]
            if not all(self.tool_steps.is_server_side(call) for call in turn.calls):
                # A turn with a client call goes back to the client whole; MCP calls in it
                # cannot, so they are closed unrun.
                unrun = [call for call in pending if call["type"] == "mcp_call"]
                await self.tool_steps.run_calls(
                    stored,
                    emitter,
                    state,
                    by_label,
                    run=[],
                    skip=unrun,
                    skip_reason="not run: the model also called client tools in this turn",
                )
                return Ending("completed")
            for call in pending:
                if call_key(call) in state.interrupted and not self.tool_steps.retry_safe(call):
                    message = (
                        f"the call to tool '{call['name']}' was cut off and the tool is not "
                        "safe to retry"
                    )
                    return Ending("failed", error={"code": "step_abandoned", "message": message})
            budget = len(pending)
            if max_tool_calls is not None:
                budget = max(0, min(budget, max_tool_calls - state.tool_calls_run))
            await self.tool_steps.run_calls(
                stored,
                emitter,
                state,
                by_label,
                run=pending[:budget],
                skip=pending[budget:],
                skip_reason=f"not run: the response reached max_tool_calls ({max_tool_calls})",
            )

    async def _model_turn(
        self,
        stored: StoredResponse,
        emitter: Emitter,
        state: RunState,
        messages: list[dict[str, Any]],
        offer: ToolOffer,
    ) -> TurnRecord:
        """One model turn; in a worker, redone when the upstream cuts it off mid-stream."""
        attempts = self.settings.upstream_max_attempts if state.redo_cut_turns else 1
        for attempt in range(1, attempts + 1):
            turn = await self._one_model_turn(
                stored,
                emitter,
                state,
                messages,
                offer,
                last_try=attempt == attempts,
            )
            if turn is not None:
                return turn
            log.warning("model turn cut off mid-stream; redoing it", extra={"attempt": attempt})
        raise AssertionError("unreachable: the last try always returns a turn")

    async def _one_model_turn(
        self,
        stored: StoredResponse,
        emitter: Emitter,
        state: RunState,
        messages: list[dict[str, Any]],
        offer: ToolOffer,
        *,
        last_try: bool,
    ) -> TurnRecord | None:
        """A model turn as a step; None when it was cut off mid-stream and should be redone."""
        body = chat_completion_body(stored.request, messages, extra_tools=offer.functions)
        [ordinal] = state.claim_ordinals(1)
        # The step records the call's shape, not the whole conversation again.
        summary = {k: v for k, v in body.items() if k != "messages"}
        summary["message_count"] = len(messages)
        await self.store.start_step(stored.id, ordinal, "model_call", summary)

        async def record_progress(items: list[dict[str, Any]]) -> None:
            await self.store.record_step_items(stored.id, ordinal, items)

        translator = TurnTranslator(
            emitter,
            first_output_index=len(state.output),
            on_item_done=record_progress,
            mcp_tools=offer.mcp_labels,
        )
        try:
            result = await run_turn(self.upstream.stream_chat(body), translator)
        except asyncio.CancelledError:
            # Cut off: its partial items stay in this run's output (a cancelled response
            # shows them), but a later attempt redoes the whole turn.
            partial = {"items": translator.partial_items()}
            state.step_results.append(partial)
            await asyncio.shield(
                self.store.finish_step(
                    stored.id,
                    ordinal,
                    status="cancelled",
                    result=partial,
                    usage=None,
                    error=ABANDONED,
                )
            )
            raise
        if result.cut_after_first_chunk and not last_try:
            # Dropped from the output; its items were closed `incomplete` in the stream.
            await self.store.finish_step(
                stored.id,
                ordinal,
                status="cancelled",
                result={"items": []},
                usage=result.usage,
                error=ABANDONED,
            )
            state.usage = add_usage(state.usage, result.usage)
            return None
        step_result = {
            "items": result.items,
            "usage_missing": result.usage_missing,
            "incomplete_reason": result.incomplete_reason,
        }
        state.step_results.append(step_result)
        await self.store.finish_step(
            stored.id,
            ordinal,
            status=result.outcome,
            result=step_result,
            usage=result.usage,
            error=result.error,
        )
        turn = TurnRecord(
            outcome=result.outcome,
            calls=result.calls,
            error=result.error,
            incomplete_reason=result.incomplete_reason,
        )
        state.record_turn(turn, result.usage, result.usage_missing)
        return turn

    async def _conversation(self, stored: StoredResponse) -> list[dict[str, Any]]:
        """The previous responses' input and output, oldest first, then this input."""
        chain: list[StoredResponse] = []
        previous_id = stored.previous_response_id
        while previous_id:
            previous = await self.store.get(previous_id, stored.owner)
            if previous is None:
                break  # deleted since this response was accepted: continue without it
            chain.append(previous)
            previous_id = previous.previous_response_id
        items: list[dict[str, Any]] = []
        for previous in reversed(chain):
            items.extend(previous.request.get("input") or [])
            items.extend(previous.output or [])
        items.extend(stored.request.get("input") or [])
        return items

    async def _finish(
        self, stored: StoredResponse, emitter: Emitter, state: RunState, ending: Ending
    ) -> StoredResponse:
        output = state.output
        final = await self.store.finish(
            stored.id,
            status=ending.status,
            output=output,
            usage=state.usage,
            usage_missing=state.usage_missing,
            error=ending.error,
            incomplete_details=ending.incomplete_details,
        )
        if final is None:  # someone else ended it first (cancel); theirs is the truth
            return await self._reload(stored)
        log.info("response finished", extra={"status": final.status})
        snapshot = response_object(final, output)
        if ending.status == "failed" and ending.error is not None:
            await emitter.emit(
                "error",
                error={
                    "type": "server_error",
                    "code": ending.error.get("code"),
                    "message": ending.error.get("message"),
                    "param": None,
                },
            )
        await emitter.emit(TERMINAL_EVENT_BY_STATUS[final.status], response=snapshot)
        return final

    async def _finish_cancelled(self, stored: StoredResponse, state: RunState) -> None:
        await self.store.finish(
            stored.id,
            status="cancelled",
            output=state.output,
            usage=state.usage,
            usage_missing=state.usage_missing,
        )
        log.info("response cancelled")

    async def _reload(self, stored: StoredResponse) -> StoredResponse:
        current = await self.store.get(stored.id, stored.owner)
        return current or stored
