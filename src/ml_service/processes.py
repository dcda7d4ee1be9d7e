"""Is a recorded process still running, and is it the same one? Shared by the run lock, the scheduler, progress and staging."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (Linux; the command name may hold spaces), None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split() if ")" in stat else []
    return fields if len(fields) >= 20 else None


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a live process (clock ticks since boot), which tells it from a later process
    given the same pid; None when the process is gone, a zombie, or there is no /proc."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22, starttime


def process_started_at(pid: int) -> float | None:
    """The start time of a live process in UTC seconds (Linux), None where unknown."""
    ticks = process_start_time(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None if ticks is None else boot + float(ticks) / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """True when a process with this id runs on this host (a zombie, killed but not reaped, does not run)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        return process_start_time(pid) is not None
    if os.name != "posix":
        return True  # no cheap, safe check (os.kill on Windows terminates): trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except OSError:
        return False
    return True


def same_process(pid: int, start: str | None) -> bool:
    """True when `pid` runs and, where both are known, started at `start` (a reused pid is another process)."""
    if not pid_alive(pid):
        return False
    now = process_start_time(pid)
    return not start or now is None or now == start
