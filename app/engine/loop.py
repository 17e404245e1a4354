"""The response loop, written once for every mode: it knows nothing of HTTP or queues.

It builds the conversation, runs model turns as persisted steps, emits events to a sink, and
commits the terminal state before announcing it, so a client that saw `response.completed`
always finds the same response with GET.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.config import Settings
from app.engine.approvals import approved_calls, awaits_approval
from app.engine.chat.client import UpstreamClient
from app.engine.chat.messages import ChatMessage, to_chat_messages
from app.engine.chat.request import chat_completion_body, tool_fields
from app.engine.chat.turn import TurnTranslator, run_turn
from app.engine.chat.usage import add_usage
from app.engine.context_window import ContextWindow
from app.engine.continuation import carried_items
from app.engine.cut_items import item_closing_events
from app.engine.events import Emitter, EventSink, stream_error
from app.engine.include import wants_logprobs
from app.engine.items import call_key
from app.engine.refusals import RefusalWatch
from app.engine.resource import response_object
from app.engine.run_state import Ending, FinishedTurn, Run, RunState, abandoned, settled
from app.engine.sealing import KeyRing
from app.engine.step_progress import StepProgress
from app.engine.step_store import RowNotWritten, StepStore, WritesAfterRow
from app.engine.tool_steps import ToolSteps
from app.engine.tools.http_tool import HttpToolRunner
from app.engine.tools.mcp import mcp_servers, offered_functions, tools_needing_approval
from app.engine.tools.registry import ToolRegistry
from app.logs import current_response_id
from app.shapes import Item, JsonObject, StepResult
from app.statuses import ResponseStatus, StepKind
from app.store.db import DATABASE_OUTAGES
from app.store.rows import Outcome, StepOutcome, StoredResponse

log = logging.getLogger(__name__)

# Cancel a run with this message to leave its response running for another process.
HAND_BACK = "hand back"


class RunMode(enum.Enum):
    """Where a run happens, and what follows from it.

    INLINE: in the API process, for a client that watches it live. The run starts fresh;
    cancelling it (the client left) ends the response `cancelled`; a turn the upstream cuts
    off fails the response, since its tokens were already shown.
    WORKER: in a worker, for a deferred or handed-over response. The run resumes after the
    last persisted step; cancelling it (a shutdown) leaves the response running for another
    attempt; a turn cut off mid-stream is redone (its items are closed `incomplete` in the
    log), up to UPSTREAM_MAX_ATTEMPTS.
    """

    INLINE = "inline"
    WORKER = "worker"

    @property
    def resumes(self) -> bool:
        return self is RunMode.WORKER

    @property
    def hands_back_on_cancel(self) -> bool:
        return self is RunMode.WORKER

    @property
    def redoes_cut_turns(self) -> bool:
        return self is RunMode.WORKER


@dataclass(frozen=True)
class ToolOffer:
    """The server-side tools offered to the model next to the client's, for every turn."""

    functions: list[JsonObject]  # registered HTTP tools and MCP tools, as function tools
    mcp_labels: dict[str, str]  # MCP tool name -> its server's label
    needs_approval: frozenset[str]  # MCP tools whose calls wait for the client's approval


class ResponseLoop:
    def __init__(
        self,
        store: StepStore,
        upstream: UpstreamClient,
        settings: Settings,
        *,
        tools: ToolRegistry,
        tool_runner: HttpToolRunner,
        keys: KeyRing,
        window: ContextWindow,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.settings = settings
        self.tools = tools
        self.tool_runner = tool_runner
        self.keys = keys
        self.window = window
        self.tool_steps = ToolSteps(store, tools, tool_runner, mcp_timeout_s=settings.mcp_timeout_s)

    async def run(
        self,
        stored: StoredResponse,
        sink: EventSink,
        mode: RunMode = RunMode.INLINE,
        *,
        next_sequence_number: int = 0,
        announced: Mapping[str, int] | None = None,
        row: asyncio.Future[Any] | None = None,
    ) -> StoredResponse:
        """Run a response to a terminal state and return the final row.

        Events are numbered from `next_sequence_number`: a background stream's log already
        holds `response.created`, written when the response was accepted. `mode` says what
        a cancellation and a cut-off turn mean (see `RunMode`); a cancellation with the
        `HAND_BACK` message leaves the response running in any mode, and so does losing the
        database for longer than DB_RUN_WAIT_S. Any other failure ends the response
        `failed`. `announced` are the items the stream announced before
        (a resumed log): new items take output indexes after theirs. `row`: the insert of
        the response's row, when the run starts before it has committed; the run writes
        nothing before it has (`WritesAfterRow`), and stops with `RowNotWritten` if it fails.
        """
        if row is not None:
            loop = self._writing_after(row)
            return await loop.run(
                stored, sink, mode, next_sequence_number=next_sequence_number, announced=announced
            )
        token = current_response_id.set(stored.id)
        sink = metrics.FirstTokenTimer(sink, stored)
        run = Run(stored, Emitter(sink, next_sequence_number, announced), RunState())
        try:
            if mode is RunMode.INLINE and stored.status == ResponseStatus.IN_PROGRESS:
                running = stored  # inserted running by the process running it, just now
            else:
                marked = await self.store.mark_in_progress(stored.id)
                if marked is None:  # it ended (e.g. was cancelled) before the loop started
                    return await self._reload(stored)
                running = marked
            run.response = running
            # Every finished item the run shows (events, the final object) goes through the
            # view: sealed reasoning when the request asked for it.
            run.emitter.view = await self.keys.view_for(running.request, running.owner)
            if mode.resumes:
                run.state = await self._restore(running)
                # New items come after what the persisted steps hold, logged or not.
                run.emitter.next_output_index = max(
                    run.emitter.next_output_index, len(run.state.output)
                )
            snapshot = response_object(running, run.state.output)
            if run.emitter.next_sequence_number == 0:
                await run.emitter.emit("response.created", response=snapshot)
            await run.emitter.emit("response.in_progress", response=snapshot)
            ending = await self._work_within_deadline(run, mode)
            return await self._finish(run, ending)
        except asyncio.CancelledError as cancelled:
            if not (mode.hands_back_on_cancel or HAND_BACK in cancelled.args):
                await asyncio.shield(self._finish_cancelled(run))
            raise
        except RowNotWritten:
            log.info("the response's row was not written; its run stops unrecorded")
            raise
        except DATABASE_OUTAGES:
            # Away for longer than DB_RUN_WAIT_S: nothing can be recorded now. The response
            # stays running; whoever owns it next (its job retried, or, for an inline run,
            # the worker its lapsed lease is handed to) resumes it from the persisted steps.
            log.warning("lost the database; leaving the response for another attempt")
            raise
        except Exception:
            log.exception("response loop crashed")
            ending = Ending.failed("server_error", "internal error")
            return await asyncio.shield(self._finish(run, ending))
        finally:
            current_response_id.reset(token)

    def _writing_after(self, row: asyncio.Future[Any]) -> ResponseLoop:
        """This loop, for one run whose writes wait for its row's insert."""
        return ResponseLoop(
            WritesAfterRow(self.store, row),
            self.upstream,
            self.settings,
            tools=self.tools,
            tool_runner=self.tool_runner,
            keys=self.keys,
            window=self.window,
        )

    async def _restore(self, stored: StoredResponse) -> RunState:
        """The state the persisted steps leave; steps cut off mid-way are marked abandoned."""
        state, cut = RunState.from_steps(await self.store.steps(stored.id))
        for step in cut:
            await self.store.finish_step(stored.id, step.ordinal, abandoned())
        if cut or state.model_turns:
            log.info(
                "resuming",
                extra={"steps_done": state.next_ordinal - len(cut), "steps_cut": len(cut)},
            )
        return state

    async def _work_within_deadline(self, run: Run, mode: RunMode) -> Ending:
        """`_work`, bounded by RESPONSE_TIMEOUT_S."""
        try:
            async with asyncio.timeout(self.settings.response_timeout_s):
                return await self._work(run, mode)
        except TimeoutError:
            message = f"the response took longer than {self.settings.response_timeout_s:g}s"
            return Ending.failed("timeout", message)

    async def _work(self, run: Run, mode: RunMode) -> Ending:
        """Model turns and their server-side tool calls, carrying on from whatever the run's
        state holds, until an answer, a client call or a limit."""
        request, state = run.response.request, run.state
        conversation = await self._conversation(run.response)
        servers = mcp_servers(request)
        unlisted = [server for server in servers if server.label not in state.mcp_listed]
        if unlisted:
            failure = await self.tool_steps.list_mcp_tools(run, unlisted)
            if failure is not None:
                return Ending.failed("mcp_error", failure)
        listed = [state.mcp_listed[server.label] for server in servers]
        mcp_offer = offered_functions(listed)
        functions = self.tools.offered_to(request)
        if request.get("tool_choice") != "none":
            functions += [function for _, function in mcp_offer.values()]
        offer = ToolOffer(
            functions=functions,
            mcp_labels={name: label for name, (label, _) in mcp_offer.items()},
            needs_approval=tools_needing_approval(servers, listed),
        )
        by_label = {server.label: server for server in servers}
        approved = approved_calls(
            run.response.id, request.get("input") or [], conversation, state.answered
        )
        if approved:  # calls the client approved run first, once
            await self.tool_steps.run_calls(
                run, by_label, to_run=approved, to_skip=[], skip_reason=""
            )
        max_tool_calls = request.get("max_tool_calls")
        while True:
            turn = state.last_turn
            answered = turn is not None and all(call_key(c) in state.answered for c in turn.calls)
            if turn is None or (turn.calls and answered):
                if turn is not None and any(call_key(c) in state.skipped for c in turn.calls):
                    return Ending.incomplete("max_tool_calls")
                if turn is not None and turn.awaits_approval:
                    return Ending(ResponseStatus.COMPLETED)
                if state.model_turns >= self.settings.max_model_turns:
                    return Ending.incomplete("max_turns")
                items = conversation + state.output
                if request.get("truncation") == "auto":
                    tools = tool_fields(request, offer.functions).get("tools")
                    items = await self.window.fit(request, items, tools)
                messages = to_chat_messages(
                    request.get("instructions"),
                    items,
                    send_reasoning=self.settings.upstream_send_reasoning,
                )
                turn = await self._model_turn(run, messages, offer, mode)
            ending = turn.ending()
            if ending is not None:
                return ending
            pending = [call for call in turn.calls if call_key(call) not in state.answered]
            if not all(self.tool_steps.is_server_side(call) for call in turn.calls):
                # A turn with a client call goes back to the client whole; MCP calls in it
                # cannot, so they are closed unrun.
                unrun = [call for call in pending if call["type"] == "mcp_call"]
                await self.tool_steps.run_calls(
                    run,
                    by_label,
                    to_run=[],
                    to_skip=unrun,
                    skip_reason="not run: the model also called client tools in this turn",
                )
                return Ending(ResponseStatus.COMPLETED)
            for call in pending:
                if call_key(call) in state.interrupted and not self.tool_steps.retry_safe(call):
                    message = (
                        f"the call to tool '{call['name']}' was cut off and the tool is not "
                        "safe to retry"
                    )
                    return Ending.failed("step_abandoned", message)
            budget = len(pending)
            if max_tool_calls is not None:
                budget = max(0, min(budget, max_tool_calls - state.tool_calls_run))
            await self.tool_steps.run_calls(
                run,
                by_label,
                to_run=pending[:budget],
                to_skip=pending[budget:],
                skip_reason=f"not run: the response reached max_tool_calls ({max_tool_calls})",
            )

    async def _model_turn(
        self, run: Run, messages: list[ChatMessage], offer: ToolOffer, mode: RunMode
    ) -> FinishedTurn:
        """One model turn; in a worker, redone when the upstream cuts it off mid-stream."""
        attempts = self.settings.upstream_max_attempts if mode.redoes_cut_turns else 1
        for attempt in range(1, attempts + 1):
            turn = await self._model_turn_attempt(
                run, messages, offer, last_try=attempt == attempts
            )
            if turn is not None:
                return turn
            log.warning("model turn cut off mid-stream; redoing it", extra={"attempt": attempt})
        raise AssertionError("unreachable: the last try always returns a turn")

    async def _model_turn_attempt(
        self, run: Run, messages: list[ChatMessage], offer: ToolOffer, *, last_try: bool
    ) -> FinishedTurn | None:
        """A model turn as a step; None when it was cut off mid-stream and should be redone."""
        stored, emitter, state = run.response, run.emitter, run.state
        body = chat_completion_body(stored.request, messages, extra_tools=offer.functions)
        [ordinal] = state.claim_ordinals(1)
        # The step records the call's shape, not the whole conversation again.
        summary = {k: v for k, v in body.items() if k != "messages"}
        summary["message_count"] = len(messages)
        # The step's row is written while the upstream request is on its way: a model call
        # has no effect to guard (a run that dies before the row commits redoes the turn,
        # as it would one cut off), and no chunk is handled before the row has committed.
        started = asyncio.ensure_future(
            self.store.start_step(stored.id, ordinal, StepKind.MODEL_CALL, summary)
        )

        progress = StepProgress(
            self.store, stored.id, ordinal, self.settings.event_flush_interval_s
        )
        translator = TurnTranslator(
            emitter,
            first_output_index=emitter.next_output_index,
            on_item_done=progress.items_done,
            mcp_tools=offer.mcp_labels,
            approval_tools=offer.needs_approval,
            logprobs=wants_logprobs(stored.request),
            think_tags=self.settings.think_tags_as_reasoning,
        )
        watch = RefusalWatch()
        try:
            try:
                chunks = watch.chunks(self.upstream.stream_chat(body))
                result = await run_turn(chunks, translator, ready=started)
            finally:
                await progress.stop()
                await asyncio.shield(started)  # however the turn went, its step is there
        except asyncio.CancelledError:
            # Cut off: its partial items stay in this run's output (a cancelled response
            # shows them), but a later attempt redoes the whole turn.
            partial: StepResult = {"items": translator.partial_items()}
            state.step_results.append(partial)
            await asyncio.shield(self.store.finish_step(stored.id, ordinal, abandoned(partial)))
            raise
        if result.cut_after_first_chunk and not last_try:
            # Dropped from the output; its items were closed `incomplete` in the stream.
            await self.store.finish_step(stored.id, ordinal, abandoned(usage=result.usage))
            state.usage = add_usage(state.usage, result.usage)
            return None
        step_result: StepResult = {
            "items": result.items,
            "usage_missing": result.usage_missing,
            "incomplete_reason": result.incomplete_reason,
        }
        state.step_results.append(step_result)
        outcome = StepOutcome(result.outcome, step_result, result.usage, result.error)
        await self.store.finish_step(stored.id, ordinal, outcome)
        turn = FinishedTurn(
            outcome=result.outcome,
            calls=result.calls,
            error=result.error,
            incomplete_reason=result.incomplete_reason,
            upstream_refusal=watch.of_turn(turns_before=state.model_turns),
            awaits_approval=awaits_approval(result.items),
        )
        state.record_turn(turn, result.usage, result.usage_missing)
        return turn

    async def _conversation(self, stored: StoredResponse) -> list[Item]:
        """The previous responses' input and output, oldest first, then this input.

        A row that carries the conversation before its input (a WebSocket continuation,
        `app.engine.continuation`) holds what came before it: the chain stops there.
        The oldest response of the chain (this one, without a previous response) may run on
        a conversation: its context, the conversation's items as they were when it was
        accepted, comes first.
        """
        chain: list[StoredResponse] = []
        previous_id = stored.previous_response_id
        carried = carried_items(stored.request)
        while previous_id and carried is None:
            previous = await self.store.get(previous_id, stored.owner)
            if previous is None:
                break  # deleted since this response was accepted: continue without it
            chain.append(previous)
            carried = carried_items(previous.request)
            previous_id = previous.previous_response_id
        items: list[Item] = list(carried or [])
        root = chain[-1] if chain else stored
        if root.conversation_id is not None and root.conversation_position is not None:
            items.extend(
                await self.store.conversation_items(
                    root.conversation_id, root.conversation_position
                )
            )
        for previous in reversed(chain):
            items.extend(previous.request.get("input") or [])
            items.extend(previous.output or [])
        items.extend(stored.request.get("input") or [])
        return items

    async def _finish(self, run: Run, ending: Ending) -> StoredResponse:
        """Commit the ending, then announce it: a client that saw the terminal event always
        finds the same response with GET."""
        final = await self._commit(run, ending)
        if final is None:  # someone else ended it first (cancel); theirs is the truth
            return await self._reload(run.response)
        log.info("response finished", extra={"status": final.status})
        output = settled(run.state.output)
        await self._close_open_items(run, output)
        if ending.status == ResponseStatus.FAILED and ending.error is not None:
            error = stream_error(ending.error["code"], ending.error["message"])
            await run.emitter.emit("error", error=error)
        snapshot = response_object(final, output)
        await run.emitter.emit(final.status.terminal_event_type, response=snapshot)
        return final

    async def _close_open_items(self, run: Run, output: list[Item]) -> None:
        """Close what the stream left open when the work ended abruptly (a timeout cut a
        turn or a tool call short), as the final output has it, before the terminal event: an
        open text part first, then its item."""
        final_copy = {item["id"]: item for item in output}
        for item_id, (index, announced) in sorted(
            run.emitter.open_items.items(), key=lambda entry: entry[1][0]
        ):
            item = final_copy.get(item_id, {**announced, "status": "incomplete"})
            part_open = item_id in run.emitter.open_parts
            for event in item_closing_events(index, item, part_open=part_open):
                await run.emitter.emit(event.pop("type"), **event)

    async def _finish_cancelled(self, run: Run) -> None:
        """Commit `cancelled`; no one is left to tell (the client went, or a cancel came)."""
        await self._commit(run, Ending(ResponseStatus.CANCELLED))
        log.info("response cancelled")

    async def _commit(self, run: Run, ending: Ending) -> StoredResponse | None:
        """The response ended as `ending` says, with what the run holds; None if it had
        already ended."""
        outcome = Outcome(
            ending.status,
            settled(run.state.output),
            usage=run.state.usage,
            usage_missing=run.state.usage_missing,
            error=ending.error,
            incomplete_details=ending.incomplete_details,
            upstream_refusal=ending.upstream_refusal,
        )
        return await self.store.finish(
            run.response.id,
            outcome,
            forgets_content=not run.response.is_kept,
            appends_to_conversation=run.response.conversation_id is not None,
            background=run.response.background,
        )

    async def _reload(self, stored: StoredResponse) -> StoredResponse:
        current = await self.store.get(stored.id, stored.owner)
        return current or stored
