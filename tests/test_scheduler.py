"""The scheduler: first run at once without a model, else after one interval; runs repeat; state file written;
the training child's deadline, its process group killed, and a state file that never shows a dead run."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ml_service.config import Settings
from ml_service.scheduler import (
    EXIT_STOPPED,
    EXIT_TIMED_OUT,
    STOPPED_MSG,
    Scheduler,
    SchedulerView,
    TrainingRunner,
    process_start_time,
    timeout_message,
)
from ml_service.training.logs import read_summary


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


def test_has_model_raising_plans_a_run_now_instead_of_failing_the_start(tmp_path: Path) -> None:
    def unreadable_store() -> bool:
        raise OSError("Input/output error")

    ran = threading.Event()
    sched = Scheduler(3600, lambda: ran.set() or 0, unreadable_store, tmp_path / "s.json")
    sched.start()
    try:
        assert ran.wait(10)
    finally:
        sched.stop()


def test_the_state_file_is_written_under_a_unique_temporary_name(tmp_path: Path) -> None:
    shared = tmp_path / f"scheduler.json.{os.getpid()}.tmp"  # the old per-process name, held by another writer
    shared.mkdir()
    clock = [1000.0]
    sched = Scheduler(3600, lambda: 0, lambda: True, tmp_path / "scheduler.json", clock=lambda: clock[0])
    sched.start()
    sched.stop()
    assert json.loads((tmp_path / "scheduler.json").read_text())["next_run_at"] == 1000.0 + 3600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scheduler.json", shared.name])


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


# --- the training child: deadline, process group, stop, liveness (real processes) ---

SLOW_CHILD = r"""
import os, subprocess, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
if (folder / "first-run-done").exists():
    sys.exit(0)
(folder / "first-run-done").write_text("")
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
(folder / "pids").write_text(f"{os.getpid()} {grandchild.pid}")
time.sleep(600)
"""


def _slow_runner(tmp_path: Path, minutes: float) -> tuple[TrainingRunner, Path]:
    script = tmp_path / "slow_child.py"
    script.write_text(SLOW_CHILD)
    settings = Settings().with_(logs_dir=tmp_path / "logs", train_timeout_minutes=minutes, algorithm="popular")
    return TrainingRunner(settings, command=[sys.executable, str(script), str(tmp_path)]), settings.train_summary_log


def _pids(tmp_path: Path) -> list[int]:
    deadline = time.monotonic() + 30
    while not (tmp_path / "pids").exists() or len((tmp_path / "pids").read_text().split()) < 2:
        assert time.monotonic() < deadline, "the slow child did not start"
        time.sleep(0.05)
    return [int(p) for p in (tmp_path / "pids").read_text().split()]


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while process_start_time(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_run_past_ml_train_timeout_is_killed_with_its_children_and_the_next_tick_runs(tmp_path: Path) -> None:
    runner, summary = _slow_runner(tmp_path, minutes=0.02)  # 1.2 s
    exits: list[int] = []
    two_runs = threading.Event()

    def run_once() -> int:
        exits.append(runner.run())
        if len(exits) >= 2:
            two_runs.set()
        return exits[-1]

    sched = Scheduler(0.2, run_once, lambda: False, tmp_path / "scheduler.json", cancel=runner.stop)
    runner.on_child = sched.child_started
    sched.start()
    try:
        child, grandchild = _pids(tmp_path)
        assert two_runs.wait(60)
    finally:
        sched.stop()
    assert exits[:2] == [EXIT_TIMED_OUT, 0]
    assert _gone(child) and _gone(grandchild)  # the whole process group, not only the child
    rows = read_summary(summary)
    assert rows[0]["TENANT_ID"] == "all" and rows[0]["MSG"] == timeout_message(0.02)
    assert "ML_TRAIN_TIMEOUT (0.02 minutes)" in rows[0]["MSG"]
    run = json.loads((tmp_path / "logs" / "training.jsonl").read_text().splitlines()[0])
    assert run["event"] == "run" and run["ok"] is False and run["exit_code"] == EXIT_TIMED_OUT
    assert sched.last_exit == 0 and not SchedulerView(tmp_path / "scheduler.json").running


def test_stop_ends_the_running_child_and_no_further_run_starts(tmp_path: Path) -> None:
    runner, summary = _slow_runner(tmp_path, minutes=0)  # no deadline
    sched = Scheduler(0.2, runner.run, lambda: False, tmp_path / "scheduler.json", cancel=runner.stop)
    runner.on_child = sched.child_started
    sched.start()
    child, grandchild = _pids(tmp_path)
    view = SchedulerView(tmp_path / "scheduler.json")
    assert view.running  # the state names a live child
    state = json.loads((tmp_path / "scheduler.json").read_text())
    assert state["child_pid"] == child and state["child_start"] == process_start_time(child)
    sched.stop()
    assert _gone(child) and _gone(grandchild)
    assert sched.last_exit == EXIT_STOPPED and sched.runs == 1
    assert read_summary(summary)[-1]["MSG"] == STOPPED_MSG
    assert not view.running


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from Linux /proc")
def test_the_view_believes_running_only_while_the_writer_and_its_child_live(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.json"
    view = SchedulerView(path)
    me, my_start = os.getpid(), process_start_time(os.getpid())

    def state(**fields: object) -> bool:
        path.write_text(json.dumps({"running": True, "next_run_at": 1.0, **fields}))
        return view.running

    assert state(pid=me, pid_start=my_start)
    assert not state(pid=_dead_pid(), pid_start="1")  # the serving process was killed while training
    assert not state(pid=me, pid_start="1")  # the pid was reused by another process
    assert not state(pid=me, pid_start=my_start, child_pid=_dead_pid(), child_start="1")  # the child died
    assert state(pid=me, pid_start=my_start, child_pid=me, child_start=my_start)
    assert not state()  # no pid at all (a file from an older version)
    path.write_text("[1, 2]")
    assert not view.running and view.next_run_at is None
