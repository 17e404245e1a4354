"""CPU time and memory of a running process tree, read from /proc (Linux).

CPU is user + system time: the scheduler's `sum_exec_runtime` of every thread of the process
and of its descendants, from /proc/<pid>/task/<tid>/schedstat, in nanoseconds. /proc/<pid>/stat
has the same split into utime and stime, but in clock ticks (10 ms): too coarse for a few
thousand tokens. It is the fallback where schedstat is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HAS_SCHEDSTAT = (PROC / "self" / "schedstat").exists()


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after "(comm)", which may itself hold spaces."""
    return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """The live processes below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):  # exited while we looked
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _process_cpu_s(pid: int) -> float:
    if not HAS_SCHEDSTAT:
        try:
            fields = _stat_fields(pid)
        except OSError:  # exited while we looked
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0.0
    return sum(_task_runtime_ns(task) for task in tasks) / 1e9


def _task_runtime_ns(task: Path) -> int:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except OSError:  # the thread ended while we looked
        return 0


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and everything below it."""
    return sum(_process_cpu_s(p) for p in [pid, *descendants(pid)])


def _status_kib(pid: int, field: str) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` now (VmRSS), in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The most resident memory `pid` has had (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024
