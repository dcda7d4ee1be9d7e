"""The scheduler: first run at once without a model, else after one interval; runs repeat; state file written."""

import json
import threading
from pathlib import Path

from ml_service.scheduler import Scheduler, SchedulerView


def _scheduler(tmp_path: Path, interval: float, has_model: bool, runs: list[float], fail: bool = False) -> Scheduler:
    done = threading.Event()

    def run_once() -> int:
        runs.append(1)
        if len(runs) >= 2:
            done.set()
        if fail:
            raise RuntimeError("boom")
        return 0

    sched = Scheduler(interval, run_once, lambda: has_model, tmp_path / "scheduler.json")
    sched.done = done  # type: ignore[attr-defined]
    return sched


def test_first_run_at_start_without_model_then_every_interval(tmp_path: Path) -> None:
    runs: list[float] = []
    sched = _scheduler(tmp_path, 0.2, False, runs)
    sched.start()
    try:
        assert sched.done.wait(10)  # type: ignore[attr-defined]
    finally:
        sched.stop()
    assert len(runs) >= 2
    state = json.loads((tmp_path / "scheduler.json").read_text())
    assert state["last_exit"] == 0 and state["next_run_at"] is not None
    assert SchedulerView(tmp_path / "scheduler.json").next_run_at == state["next_run_at"]


def test_with_a_model_the_first_run_waits_one_interval(tmp_path: Path) -> None:
    runs: list[float] = []
    clock = [1000.0]
    sched = Scheduler(3600, lambda: runs.append(1) or 0, lambda: True, tmp_path / "s.json", clock=lambda: clock[0])
    sched.start()
    try:
        assert sched.next_run_at == 1000.0 + 3600
        assert not runs
    finally:
        sched.stop()


def test_a_crashing_run_is_retried_at_the_next_tick(tmp_path: Path) -> None:
    runs: list[float] = []
    sched = _scheduler(tmp_path, 0.2, False, runs, fail=True)
    sched.start()
    try:
        assert sched.done.wait(10)  # type: ignore[attr-defined]
    finally:
        sched.stop()
    assert sched.last_exit == -1 and len(runs) >= 2


def test_trigger_runs_now(tmp_path: Path) -> None:
    ran = threading.Event()
    sched = Scheduler(3600, lambda: ran.set() or 0, lambda: True, tmp_path / "s.json")
    sched.start()
    try:
        sched.trigger()
        assert ran.wait(10)
    finally:
        sched.stop()
