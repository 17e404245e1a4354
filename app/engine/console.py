"""The operator console's side of the engine, built once per API process: what it reads
(`console_reads`) and who may use it (`console_access`). Its actions (cancel, delete) are
the API's own, in `api_side`."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.console_access import ConsoleAccess
from app.engine.console_reads import ConsoleReads
from app.engine.runtime import Runtime
from app.store.console import ConsoleStore


@dataclass(frozen=True)
class Console:
    reads: ConsoleReads
    access: ConsoleAccess


def open_console(runtime: Runtime) -> Console:
    store = ConsoleStore(runtime.pool)
    return Console(
        reads=ConsoleReads(store, runtime.settings),
        access=ConsoleAccess(runtime.settings, runtime.api_keys, store),
    )
