"""Server-side tool work as persisted steps: HTTP tool calls, MCP tool listing and calls.

Every call is a `tool_call` step written when it starts and when it ends, and its output
item is emitted the way OpenAI streams it: a registered function's call is followed by a
`function_call_output` item; an `mcp_call` item, opened by the model turn, is completed in
place with the server's output or error. An approved call (`app.engine.approvals`) has no
turn to open its `mcp_call`: its step announces the item itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from app import metrics
from app.engine.events import Emitter
from app.engine.items import call_key, function_call_output
from app.engine.run_state import ABANDONED, Run, RunState
from app.engine.step_store import StepStore
from app.engine.tools.http_tool import HttpToolRunner, tool_error
from app.engine.tools.mcp import McpServer, list_tools_item
from app.engine.tools.mcp_errors import (
    INVALID_PARAMS,
    McpCallError,
    execution_error,
    protocol_error,
)
from app.engine.tools.registry import ToolRegistry
from app.shapes import ErrorInfo, Item, StepResult
from app.statuses import StepKind, StepStatus
from app.store.rows import StepOutcome, StoredResponse


def _tool_label(call: Item) -> str:
    """A registered tool's name (the operator's, so bounded); MCP tools are named elsewhere."""
    return metrics.MCP_TOOL if call["type"] == "mcp_call" else str(call["name"])


@dataclass
class _Pending:
    call: Item
    item: Item  # what the step produces: a new output item, or the mcp_call itself
    output_index: int
    # A function_call_output is new; an mcp_call was announced by its turn, unless approved.
    announced_here: bool


@dataclass(frozen=True)
class ToolSteps:
    store: StepStore
    registry: ToolRegistry
    http: HttpToolRunner
    mcp_timeout_s: float

    def is_server_side(self, call: Item) -> bool:
        return call["type"] == "mcp_call" or self.registry.get(call["name"]) is not None

    def retry_safe(self, call: Item) -> bool:
        """Whether a call cut off mid-way may be made again (with the same Idempotency-Key).

        MCP calls are redone: MCP has no idempotency key to offer, and a server whose tool
        must not run twice should not be exposed through an automatic loop.
        """
        if call["type"] == "mcp_call":
            return True
        tool = self.registry.get(call["name"])
        return tool is not None and tool.retry_safe

    # --- MCP tool listing ------------------------------------------------------------

    async def list_mcp_tools(self, run: Run, servers: list[McpServer]) -> str | None:
        """List each server's tools as an `mcp_list_tools` step; an error message on failure."""
        stored, emitter, state = run.response, run.emitter, run.state
        # Imported here: the mcp package takes most of a second to load, which every API and
        # worker process would otherwise pay at start-up, MCP or not.
        from app.engine.tools.mcp_client import McpError, list_mcp_tools

        for server, ordinal in zip(servers, state.claim_ordinals(len(servers)), strict=True):
            index = emitter.next_output_index
            placeholder = list_tools_item(server, [], None)
            request = {"mcp_list_tools": server.label, "server_url": server.url}
            await self.store.start_step(stored.id, ordinal, StepKind.TOOL_CALL, request)
            await emitter.emit("response.output_item.added", output_index=index, item=placeholder)
            await emitter.emit(
                "response.mcp_list_tools.in_progress", item_id=placeholder["id"], output_index=index
            )
            try:
                tools = await list_mcp_tools(
                    server.url, server.headers, timeout_s=self.mcp_timeout_s
                )
                error = None
            except McpError as exc:
                tools, error = [], str(exc)
            item = {**list_tools_item(server, tools, error), "id": placeholder["id"]}
            status = StepStatus.COMPLETED if error is None else StepStatus.FAILED
            failure: ErrorInfo | None = (
                None if error is None else {"code": "mcp_error", "message": error}
            )
            outcome = StepOutcome(status, {"items": [item]}, error=failure)
            await self.store.finish_step(stored.id, ordinal, outcome)
            state.step_results.append({"items": [item]})
            await emitter.emit(
                f"response.mcp_list_tools.{status}", item_id=item["id"], output_index=index
            )
            await emitter.emit("response.output_item.done", output_index=index, item=item)
            if error is not None:
                return f"could not list the tools of MCP server '{server.label}': {error}"
            state.mcp_listed[server.label] = item
        return None

    # --- calls -----------------------------------------------------------------------

    async def run_calls(
        self,
        run: Run,
        servers: dict[str, McpServer],
        *,
        to_run: list[Item],
        to_skip: list[Item],
        skip_reason: str,
    ) -> None:
        """Run `to_run` at once, each a step; close `to_skip` unrun with `skip_reason`, in
        order."""
        stored, emitter, state = run.response, run.emitter, run.state
        pending = self._announceable([*to_run, *to_skip], state, emitter)
        ran = len(to_run)
        # An approved call has no turn holding its item: the run's output takes it as it
        # starts, so a response that ends before the call does shows it cut off.
        held = {item["id"] for item in state.output}
        for p in pending:
            if p.item["type"] == "mcp_call" and p.item["id"] not in held:
                state.step_results.append({"items": [p.item]})
        for p in pending:
            if p.announced_here:
                await emitter.emit(
                    "response.output_item.added", output_index=p.output_index, item=p.item
                )
            if p.item["type"] == "mcp_call":
                await emitter.emit(
                    "response.mcp_call.in_progress",
                    item_id=p.item["id"],
                    output_index=p.output_index,
                )
        ordinals = state.claim_ordinals(len(pending))
        finished = await asyncio.gather(
            *(
                self._call_step(stored, ordinal, p, servers)
                for ordinal, p in zip(ordinals, pending[:ran], strict=False)
            ),
            *(
                self._skipped_step(stored, ordinal, p, skip_reason)
                for ordinal, p in zip(ordinals[ran:], pending[ran:], strict=True)
            ),
        )
        state.tool_calls_run += ran
        state.skipped.update(call_key(p.call) for p in pending[ran:])
        for p, done in zip(pending, finished, strict=True):
            state.step_results.append({"items": [done]})
            state.answered.add(call_key(p.call))
            if p.item["type"] == "mcp_call":
                outcome = "completed" if done["error"] is None else "failed"
                await emitter.emit(
                    f"response.mcp_call.{outcome}", item_id=done["id"], output_index=p.output_index
                )
            await emitter.emit("response.output_item.done", output_index=p.output_index, item=done)

    def _announceable(self, calls: list[Item], state: RunState, emitter: Emitter) -> list[_Pending]:
        # An mcp_call is completed where it was announced; a stream that was not logged
        # announced it at its place in the output. An approved one neither stream nor output
        # holds yet is announced now.
        positions = {item["id"]: index for index, item in enumerate(state.output)}
        next_index = emitter.next_output_index
        pending = []
        for call in calls:
            if call["type"] != "mcp_call":
                item = function_call_output(call)
                pending.append(_Pending(call, item, next_index, announced_here=True))
                next_index += 1
                continue
            at = emitter.announced.get(call["id"], positions.get(call["id"]))
            if at is not None:
                pending.append(_Pending(call, call, at, announced_here=False))
            else:
                pending.append(_Pending(call, call, next_index, announced_here=True))
                next_index += 1
        return pending

    async def _call_step(
        self, stored: StoredResponse, ordinal: int, p: _Pending, servers: dict[str, McpServer]
    ) -> Item:
        call = p.call
        request = {"type": call["type"], "name": call["name"], "arguments": call["arguments"]}
        request["call_id"] = call_key(call)
        await self.store.start_step(stored.id, ordinal, StepKind.TOOL_CALL, request)
        try:
            if call["type"] == "mcp_call":
                done = await self._call_mcp(servers[call["server_label"]], call)
            else:
                done = {
                    **p.item,
                    "status": "completed",
                    "output": await self._call_http(stored, call),
                }
        except asyncio.CancelledError:
            metrics.tool_call(_tool_label(call), "cancelled")
            await asyncio.shield(
                self._finish(stored, ordinal, StepStatus.CANCELLED, None, ABANDONED)
            )
            raise
        await self._finish(stored, ordinal, StepStatus.COMPLETED, done)
        return done

    async def _call_http(self, stored: StoredResponse, call: Item) -> str:
        tool = self.registry.get(call["name"])
        assert tool is not None
        return await self.http.call(
            tool, call_id=call["call_id"], arguments=call["arguments"], response_id=stored.id
        )

    async def _call_mcp(self, server: McpServer, call: Item) -> Item:
        from app.engine.tools.mcp_client import McpError, call_mcp_tool  # see list_mcp_tools

        output: str | None = None
        error: McpCallError | None = None
        try:
            arguments = json.loads(call["arguments"] or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("not an object")
        except ValueError:
            error = protocol_error("arguments must be a JSON object", INVALID_PARAMS)
        else:
            try:
                output, failure = await call_mcp_tool(
                    server.url,
                    server.headers,
                    call["name"],
                    arguments,
                    timeout_s=self.mcp_timeout_s,
                )
                error = execution_error(failure) if failure is not None else None
            except McpError as exc:
                error = protocol_error(str(exc))
        status = "completed" if error is None else "failed"
        metrics.tool_call(metrics.MCP_TOOL, "ok" if error is None else "error")
        return {**call, "output": output, "error": error, "status": status}

    async def _skipped_step(
        self, stored: StoredResponse, ordinal: int, p: _Pending, reason: str
    ) -> Item:
        if p.call["type"] == "mcp_call":
            done = {**p.call, "error": protocol_error(reason), "status": "incomplete"}
        else:
            done = {**p.item, "output": tool_error(reason), "status": "incomplete"}
        metrics.tool_call(_tool_label(p.call), "skipped")
        request = {
            "type": p.call["type"],
            "name": p.call["name"],
            "call_id": call_key(p.call),
            "skipped": reason,
        }
        await self.store.start_step(stored.id, ordinal, StepKind.TOOL_CALL, request)
        await self._finish(stored, ordinal, StepStatus.CANCELLED, done)
        return done

    async def _finish(
        self,
        stored: StoredResponse,
        ordinal: int,
        status: StepStatus,
        item: Item | None,
        error: ErrorInfo | None = None,
    ) -> None:
        result: StepResult = {"items": [item] if item is not None else []}
        await self.store.finish_step(stored.id, ordinal, StepOutcome(status, result, error=error))
