"""Retraining on a timer (first run at start without a model, then every ML_RECOMMENDATION_RETRAIN_FREQ minutes),
in a child process group with a deadline (ML_TRAIN_TIMEOUT), and a state file other processes can trust."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ml_service.config import Settings
from ml_service.processes import process_start_time, same_process
from ml_service.store.files import atomic_write
from ml_service.training.logs import SummaryRow, append_jsonl, append_summary, summary_timestamp

log = logging.getLogger("ml_service.scheduler")
SCHEDULER_PID_ENV = "ML_SCHEDULER_PID"
EXIT_TIMED_OUT = 124  # as timeout(1)
EXIT_STOPPED = 143  # as a shell reports a process ended by SIGTERM
STOP_GRACE_S = 5.0  # between SIGTERM and SIGKILL of a training child's group


class Scheduler:
    """Runs `run_once` on a timer in a background thread, one run at a time, and publishes its state to a file."""

    def __init__(
        self,
        interval_s: float,
        run_once: Callable[[], int],
        has_model: Callable[[], bool],
        state_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._run_once = run_once
        self._has_model = has_model
        self._state_path = state_path
        self._clock = clock
        self._cancel = cancel
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_run_at: float | None = None
        self.running = False
        self.last_run_at: float | None = None
        self.last_exit: int | None = None
        self.runs = 0
        self.child_pid: int | None = None

    def start(self) -> None:
        """Plan the first run (now if there is no model, else one interval later) and start the thread."""
        now = self._clock()
        try:
            has_model = self._has_model()
        except Exception:  # e.g. an unreadable store: training now is what can repair it
            log.exception("cannot tell whether a model is published; training now")
            has_model = False
        self.next_run_at = now if not has_model else now + self.interval_s
        self._save()
        self._thread = threading.Thread(target=self._loop, name="ml-scheduler", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Run as soon as the current run (if any) has finished."""
        self.next_run_at = self._clock()
        self._wake.set()

    def child_started(self, pid: int | None) -> None:
        """Record the training child's pid (None when it has ended), so readers can check it is alive."""
        self.child_pid = pid
        self._save()

    def stop(self, timeout: float = 2 * STOP_GRACE_S) -> None:
        """Stop the timer and end a running training child (the service is stopping)."""
        self._stop.set()
        self._wake.set()
        if self._cancel is not None:
            self._cancel()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            assert self.next_run_at is not None
            delay = self.next_run_at - self._clock()
            if delay > 0:
                self._wake.wait(min(delay, 60.0))
                self._wake.clear()
                continue
            started = self._clock()
            self.running, self.last_run_at = True, started
            self._save()
            try:
                self.last_exit = self._run_once()
            except Exception:  # the scheduler must survive anything a run does
                log.exception("training run crashed")
                self.last_exit = -1
            self.runs += 1
            self.running, self.child_pid = False, None
            # Every interval from the start of the last run; a run longer than the interval is followed at once.
            self.next_run_at = max(started + self.interval_s, self._clock())
            self._save()

    def _save(self) -> None:
        state = {
            "next_run_at": self.next_run_at,
            "running": self.running,
            "last_run_at": self.last_run_at,
            "last_exit": self.last_exit,
            "interval_s": self.interval_s,
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "child_pid": self.child_pid,
            "child_start": process_start_time(self.child_pid) if self.child_pid else None,
        }
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self._state_path, json.dumps(state).encode("utf-8"))  # a unique temporary name per write
        except OSError as exc:
            log.warning("cannot write scheduler state %s: %s", self._state_path, exc)


@dataclass
class SchedulerView:
    """Read-only view of a scheduler's state file, for health checks in any worker process.

    `running` is believed only while the process that wrote it (and its training child, once started) is alive,
    so the state left by a killed service or a killed child never shows as a run in progress.
    """

    state_path: Path

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    @property
    def next_run_at(self) -> float | None:
        return self._read().get("next_run_at")

    @property
    def running(self) -> bool:
        state = self._read()
        if not state.get("running"):
            return False
        if not same_process(state.get("pid"), state.get("pid_start")):
            return False
        child = state.get("child_pid")
        return child is None or same_process(child, state.get("child_start"))


def scheduler_state_path(settings: Settings) -> Path:
    return settings.recommender_dir / "scheduler.json"


def timeout_message(minutes: float) -> str:
    return (f"The training run exceeded ML_TRAIN_TIMEOUT ({minutes:g} minutes) and was stopped; "
            "the previous models keep serving")


STOPPED_MSG = "The training run was stopped because the service stopped; the previous models keep serving"


class TrainingRunner:
    """Runs one training child at a time in its own process group, with a deadline; `stop()` ends it from any thread.

    The group is killed whole, since the child may have children of its own.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        timeout_s: float | None = None,
        on_child: Callable[[int | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.env = env
        self.command = list(command or [sys.executable, "-m", "ml_service.cli", "train", "--scheduled"])
        minutes = settings.train_timeout_minutes
        self.timeout_s = timeout_s if timeout_s is not None else (minutes * 60.0 if minutes > 0 else None)
        self.on_child = on_child
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def run(self) -> int:
        """One run; returns the child's exit code, EXIT_TIMED_OUT after the deadline, EXIT_STOPPED after stop()."""
        env = dict(self.env if self.env is not None else os.environ)
        env[SCHEDULER_PID_ENV] = str(os.getpid())
        log.info("starting training run: %s", " ".join(self.command))
        with self._lock:
            if self._stopping:
                return EXIT_STOPPED
            child = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL, **_new_group())
            self._child = child
        if self.on_child is not None:
            self.on_child(child.pid)
        try:
            try:
                code = child.wait(self.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                log.error("training run exceeded ML_TRAIN_TIMEOUT (%.0f s): stopping process group %d",
                          self.timeout_s or 0, child.pid)
                kill_group(child, STOP_GRACE_S)
                code = EXIT_TIMED_OUT
        finally:
            with self._lock:
                self._child = None
                stopping = self._stopping
            if self.on_child is not None:
                self.on_child(None)
        msg = ""
        if timed_out:
            msg = timeout_message((self.timeout_s or 0.0) / 60.0)
        elif stopping:
            msg, code = STOPPED_MSG, EXIT_STOPPED
        elif code < 0 or code > 2:
            # The child died before it could log (killed, out of memory): say so in the summary log.
            msg = f"The training process ended unexpectedly (exit code {code}); the previous models keep serving"
        if msg:
            append_summary(self.settings.train_summary_log,
                           [SummaryRow(summary_timestamp(), self.settings.algorithm, "all", msg)])
            append_jsonl(self.settings.training_jsonl,
                         {"event": "run", "ok": False, "error": msg, "exit_code": code, "at": time.time()})
        log.info("training run finished with exit code %d", code)
        return code

    def stop(self) -> None:
        """End the running child (and its group), e.g. when the service stops; later runs do not start."""
        with self._lock:
            self._stopping = True
            child = self._child
        if child is not None:
            log.info("stopping training child %d", child.pid)
            kill_group(child, STOP_GRACE_S)


def _new_group() -> dict[str, Any]:
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def kill_group(child: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left after `grace_s`, then reap the child."""
    if os.name != "posix":
        child.kill()
        child.wait()
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # the leader is gone: end whatever else of its group is left
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return


def die_with_parent() -> None:
    """In a scheduled child (Linux): be killed when the service dies, even by SIGKILL, so no orphan trains on."""
    expected = os.environ.get(SCHEDULER_PID_ENV, "")
    if not sys.platform.startswith("linux") or not expected.isdigit():
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(expected):  # the parent died before prctl took effect
        os._exit(EXIT_STOPPED)


def train_in_subprocess(settings: Settings, env: dict[str, str] | None = None) -> int:
    """One training run in a child process (crash isolation; the server never stalls); returns its exit code."""
    return TrainingRunner(settings, env=env).run()
