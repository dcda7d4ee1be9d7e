"""Retraining on a timer: first run at start when no model exists, then every ML_RECOMMENDATION_RETRAIN_FREQ minutes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ml_service.config import Settings
from ml_service.training.logs import SummaryRow, append_summary, summary_timestamp

log = logging.getLogger("ml_service.scheduler")


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
    ) -> None:
        self.interval_s = interval_s
        self._run_once = run_once
        self._has_model = has_model
        self._state_path = state_path
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_run_at: float | None = None
        self.running = False
        self.last_run_at: float | None = None
        self.last_exit: int | None = None
        self.runs = 0

    def start(self) -> None:
        """Plan the first run (now if there is no model, else one interval later) and start the thread."""
        now = self._clock()
        self.next_run_at = now if not self._has_model() else now + self.interval_s
        self._save()
        self._thread = threading.Thread(target=self._loop, name="ml-scheduler", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Run as soon as the current run (if any) has finished."""
        self.next_run_at = self._clock()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
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
            self.running = False
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
        }
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_path.with_name(self._state_path.name + ".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self._state_path)
        except OSError as exc:
            log.warning("cannot write scheduler state %s: %s", self._state_path, exc)


@dataclass
class SchedulerView:
    """Read-only view of a scheduler's state file, for health checks in any worker process."""

    state_path: Path

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def next_run_at(self) -> float | None:
        return self._read().get("next_run_at")

    @property
    def running(self) -> bool:
        return bool(self._read().get("running"))


def scheduler_state_path(settings: Settings) -> Path:
    return settings.recommender_dir / "scheduler.json"


def train_in_subprocess(settings: Settings, env: dict[str, str] | None = None) -> int:
    """One training run in a child process (crash isolation; the server never stalls); returns its exit code."""
    command = [sys.executable, "-m", "ml_service.cli", "train", "--scheduled"]
    log.info("starting training run: %s", " ".join(command))
    completed = subprocess.run(command, env=env or dict(os.environ), stdin=subprocess.DEVNULL, check=False)
    if completed.returncode < 0 or completed.returncode > 2:
        # The child died before it could log (killed, out of memory): say so in the summary log.
        append_summary(
            settings.train_summary_log,
            [SummaryRow(summary_timestamp(), settings.algorithm, "all",
                        f"The training process ended unexpectedly (exit code {completed.returncode}); the previous models keep serving")],
        )
    log.info("training run finished with exit code %d", completed.returncode)
    return completed.returncode
