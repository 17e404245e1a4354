"""Fixtures of the unit tier: the engine on in-memory parts, no database, server or process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.memory_store import MemoryStore
from tests.unit.harness import Harness, unit_settings
from tests.unit.tool_host import ToolHost
from tests.unit.upstream import ScriptedUpstream


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def upstream() -> ScriptedUpstream:
    """Script it with `upstream.then(...)`; unscripted requests get a 400."""
    return ScriptedUpstream()


@pytest.fixture
def tools() -> ToolHost:
    return ToolHost()


@pytest.fixture
async def harness(
    store: MemoryStore, upstream: ScriptedUpstream, tools: ToolHost
) -> AsyncIterator[Harness]:
    harness = Harness(store, upstream, tools, unit_settings())
    yield harness
    await harness.aclose()
