"""A process for the run-lock tests: `hold ROOT STALE_S` holds the lock until a line on stdin; `loop ROOT LOG N` takes it N times."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ml_service.store import RunLock


def hold(root: Path, stale_s: float) -> None:
    lock = RunLock(root, stale_after_s=stale_s, command="lock_helper")
    lock.acquire()
    print("held", flush=True)
    sys.stdin.readline()
    lock.release()
    print("released", flush=True)


def loop(root: Path, log: Path, times: int) -> None:
    """Append `<pid> in` / `<pid> out` around each hold: with mutual exclusion the lines pair up."""
    for _ in range(times):
        lock = RunLock(root, stale_after_s=60.0, command="loop")
        lock.acquire(wait=True, poll_s=0.005)
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} in\n")
        time.sleep(0.02)
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} out\n")
        lock.release()


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(Path(sys.argv[2]), float(sys.argv[3]))
    else:
        loop(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
