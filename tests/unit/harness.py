"""The response loop wired to in-memory parts: a `MemoryStore`, a scripted upstream and the
tool host, both behind `httpx.MockTransport`, and a recording sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.engine.chat.client import UpstreamClient
from app.engine.context_window import ContextWindow
from app.engine.cut_items import closing_events
from app.engine.events import EventSink, announced_items
from app.engine.loop import ResponseLoop, RunMode
from app.engine.resource import response_object
from app.engine.sealing import KeyRing
from app.engine.tools.http_tool import HttpToolRunner
from app.shapes import Event
from app.statuses import ResponseStatus
from app.store.rows import StoredResponse, StoredStep
from tests.support.memory_store import MemoryStore, ProcessCrash, Write
from tests.unit.streams import RecordingSink
from tests.unit.tool_host import REGISTRY, ToolHost
from tests.unit.upstream import BASE_URL, ScriptedUpstream

#: Bound on one run of the loop in a test; every scripted run ends far sooner.
RUN_BOUND_S = 10.0


def unit_settings(**overrides: Any) -> Settings:
    """Settings for the unit tier, every value the loop reads given explicitly (the
    environment cannot change them): fast retries, a small turn limit."""
    values: dict[str, Any] = {
        "database_url": "",
        "upstream_base_url": BASE_URL,
        "upstream_api_key": "",
        "upstream_timeout_s": 5.0,
        "upstream_connect_timeout_s": 5.0,
        "upstream_max_attempts": 3,
        "upstream_backoff_base_s": 0.001,
        "upstream_backoff_max_s": 0.001,
        "max_model_turns": 4,
        "response_timeout_s": 10.0,
        "mcp_timeout_s": 5.0,
        "tools_file": "",
        "think_tags_as_reasoning": False,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Run:
    """A finished run: the row it returned, the events it sent (when recorded), and the
    store it used."""

    final: StoredResponse
    events: list[Event]
    store: MemoryStore

    @property
    def response(self) -> dict[str, Any]:
        """The Response object as GET would show it."""
        return response_object(self.final, self.final.output or [])

    @property
    def output(self) -> list[dict[str, Any]]:
        return self.final.output or []

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def of_type(self, event_type: str) -> list[Event]:
        return [event for event in self.events if event["type"] == event_type]

    @property
    def steps(self) -> list[StoredStep]:
        return self.store.step_list(self.final.id)


@dataclass
class Harness:
    """Builds loops on the test's store, upstream and tool host, and runs them bounded."""

    store: MemoryStore
    upstream: ScriptedUpstream
    tools: ToolHost
    settings: Settings
    _clients: list[UpstreamClient | HttpToolRunner] = field(
        default_factory=list, init=False, repr=False
    )

    def configure(self, **overrides: Any) -> None:
        """Change settings for the loops built from now on."""
        self.settings = unit_settings(**{**self.settings.model_dump(), **overrides})

    def loop(self, store: MemoryStore | None = None) -> ResponseLoop:
        upstream = UpstreamClient(
            self.settings, transport=httpx.MockTransport(self.upstream.handler)
        )
        runner = HttpToolRunner(transport=httpx.MockTransport(self.tools.handler))
        self._clients += [upstream, runner]
        store = store or self.store
        keys = KeyRing(self.settings.reasoning_key_list, store)
        return ResponseLoop(
            store,
            upstream,
            self.settings,
            tools=REGISTRY,
            tool_runner=runner,
            keys=keys,
            window=ContextWindow(upstream, self.settings),
        )

    def seed(self, body: Mapping[str, Any], mode: RunMode = RunMode.INLINE) -> StoredResponse:
        """The row as the API stores it: `in_progress` under this process's lease for an
        inline run, `queued` for a worker."""
        if mode is RunMode.INLINE:
            return self.store.seed(body, status=ResponseStatus.IN_PROGRESS, lease_owner="api:1")
        return self.store.seed(body, status=ResponseStatus.QUEUED)

    async def run(
        self,
        request: Mapping[str, Any] | StoredResponse,
        mode: RunMode = RunMode.INLINE,
        *,
        store: MemoryStore | None = None,
        sink: EventSink | None = None,
        next_sequence_number: int = 0,
        announced: Mapping[str, int] | None = None,
    ) -> Run:
        """Run the loop on a stored response (or on a new one for a request body). The run's
        events are recorded unless they go to the given `sink` instead."""
        stored = request if isinstance(request, StoredResponse) else self.seed(request, mode)
        recording = RecordingSink()
        async with asyncio.timeout(RUN_BOUND_S):
            final = await self.loop(store).run(
                stored,
                sink or recording,
                mode,
                next_sequence_number=next_sequence_number,
                announced=announced,
            )
        return Run(final, recording.events, store or self.store)

    @contextlib.asynccontextmanager
    async def started(
        self,
        stored: StoredResponse,
        mode: RunMode = RunMode.INLINE,
        *,
        store: MemoryStore | None = None,
    ) -> AsyncIterator[tuple[asyncio.Task[StoredResponse], RecordingSink]]:
        """The loop running in a task of its own, for a test to interfere with; the task is
        cancelled on the way out if it is still running."""
        sink = RecordingSink()
        task = asyncio.create_task(self.loop(store).run(stored, sink, mode))
        try:
            yield task, sink
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=RUN_BOUND_S)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failed test reports its own assertion

    async def crash(
        self,
        stored: StoredResponse,
        at: Callable[[Write], bool],
        *,
        committed: bool = False,
    ) -> tuple[MemoryStore, list[Event]]:
        """Run `stored` as a worker until the store dies at the write `at` accepts; the store
        the next attempt finds, and the events the crashed attempt had flushed (what its log
        holds)."""
        self.store.crash_at(at, committed=committed)
        sink = RecordingSink()
        with pytest.raises(ProcessCrash):
            await self.run(stored, RunMode.WORKER, sink=sink)
        logged = sink.events[: sink.flushes[-1]] if sink.flushes else []
        return self.store.restarted(), logged

    async def resume(
        self, store: MemoryStore, response_id: str, logged: list[Event]
    ) -> tuple[Run, list[Event]]:
        """The next attempt on `store`, as another worker makes it: its run, and the whole
        log a client streaming the response saw (what was `logged`, the items the crash
        left open closed, then the new run's events)."""
        before = [*logged, *closing_events(logged)]
        next_number = before[-1]["sequence_number"] + 1 if before else 0
        stored = store.response(response_id)
        run = await self.run(
            stored,
            RunMode.WORKER,
            store=store,
            next_sequence_number=next_number,
            announced=announced_items(before),
        )
        return run, [*before, *run.events]

    async def crash_and_resume(
        self, body: Mapping[str, Any], at: Callable[[Write], bool], *, committed: bool = False
    ) -> tuple[Run, list[Event]]:
        """A worker's run of a new response for `body` crashed at the write `at` accepts, and
        the next attempt's (see `crash` and `resume`)."""
        stored = self.seed(body, RunMode.WORKER)
        store, logged = await self.crash(stored, at, committed=committed)
        return await self.resume(store, stored.id, logged)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
