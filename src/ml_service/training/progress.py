"""Live progress of training runs: each run rewrites a small JSON file that servers, the dashboard and the CLI read."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ml_service.processes import pid_alive

PROGRESS_DIR = "progress"  # under ML_LOGS_DIR
KEEP_FINISHED = 3  # finished runs' files kept for display; older ones are removed when a run starts
# Share of a tenant's work each stage starts at (load → train → publish); training dominates.
STAGE_START = {"fetch": 0.0, "load": 0.0, "train": 0.1, "publish": 0.95}
ETA_MIN_FRACTION = 0.05  # below this, an estimate of the remaining time is noise: none is shown


def progress_dir(logs_dir: Path) -> Path:
    return Path(logs_dir) / PROGRESS_DIR


def atomic_write_json(path: Path, document: dict[str, Any]) -> None:
    """Write JSON via a uniquely named temporary file and rename: a reader sees the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ProgressWriter:
    """Progress of one run: the tenants, the current tenant/stage/candidate, fraction done and an ETA."""

    def __init__(self, logs_dir: Path, *, clock: Callable[[], float] = time.time, pid: int | None = None) -> None:
        self.clock = clock
        self.pid = os.getpid() if pid is None else pid
        self.started_at = clock()
        self.path = progress_dir(logs_dir) / f"run-{int(self.started_at * 1000)}-{self.pid}.json"
        self.state: dict[str, Any] = {
            "pid": self.pid, "started_at": self.started_at, "state": "running", "stage": "fetch", "tenant": None,
            "tenants": [], "tenant_index": 0, "candidate": None, "fraction": 0.0, "eta_s": None, "message": "",
        }
        self._within = 0.0
        _remove_old_files(progress_dir(logs_dir))

    def tenants(self, names: list[str]) -> None:
        self.state["tenants"] = list(names)
        self._save()

    def stage(self, tenant: str, stage: str) -> None:
        tenants = self.state["tenants"]
        self.state.update(tenant=tenant, stage=stage, candidate=None,
                          tenant_index=tenants.index(tenant) if tenant in tenants else self.state["tenant_index"])
        self._within = STAGE_START.get(stage, self._within)
        self._save()

    def candidate(self, name: str, position: int, total: int) -> None:
        """auto is tuning its `position`-th of `total` candidates (0-based)."""
        start, end = STAGE_START["train"], STAGE_START["publish"]
        self.state["candidate"] = name
        self._within = start + (end - start) * position / max(total, 1)
        self._save()

    def tenant_done(self, tenant: str) -> None:
        self.state["tenant_index"] = self.state["tenant_index"] + 1
        self.state.update(candidate=None)
        self._within = 0.0
        self._save()

    def finish(self, ok: bool, message: str = "") -> None:
        self.state.update(state="done" if ok else "failed", stage="done", candidate=None, fraction=1.0 if ok else self.state["fraction"],
                          eta_s=0.0 if ok else None, message=message, finished_at=self.clock())
        self._save(compute=False)

    def _save(self, compute: bool = True) -> None:
        now = self.clock()
        if compute:
            n = len(self.state["tenants"])
            fraction = (min(self.state["tenant_index"], n) + self._within) / n if n else 0.0
            fraction = max(0.0, min(fraction, 0.999))
            elapsed = now - self.started_at
            self.state["fraction"] = round(fraction, 4)
            self.state["eta_s"] = round(elapsed / fraction * (1 - fraction), 1) if fraction >= ETA_MIN_FRACTION else None
        self.state["updated_at"] = now
        try:
            atomic_write_json(self.path, self.state)
        except OSError:
            pass  # progress is advisory: a full disk must not fail the training run

    def reporter(self, event: str, details: dict[str, Any]) -> None:
        """A pipeline Reporter: maps run_training's events onto this file."""
        if event == "tenants":
            self.tenants(details["tenants"])
        elif event == "stage":
            self.stage(details["tenant"], details["stage"])
        elif event == "candidate":
            self.candidate(details["candidate"], details["position"], details["total"])
        elif event == "tenant-done":
            self.tenant_done(details["result"].tenant)
        elif event == "quick":  # anytime's first pass: shown, but the fraction counts the full pass only
            self.state.update(tenant=details["tenant"], stage="quick", candidate=None)
            self._save()


def read_runs(logs_dir: Path, *, alive: Callable[[int], bool] = pid_alive) -> list[dict[str, Any]]:
    """Every run's progress, newest first; a `running` run whose process is gone is reported as `dead`."""
    folder = progress_dir(logs_dir)
    runs: list[dict[str, Any]] = []
    try:
        paths = sorted(folder.glob("run-*.json"), reverse=True)
    except OSError:
        return []
    for path in paths:
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(run, dict):
            continue
        if run.get("state") == "running" and not alive(int(run.get("pid") or 0)):
            run["state"] = "dead"
            run["eta_s"] = None
            run["message"] = "the training process ended without finishing (killed or crashed)"
        runs.append(run)
    return runs


def current_run(logs_dir: Path) -> dict[str, Any] | None:
    """The newest run (running, or else the last finished or dead one); None when none was recorded."""
    runs = read_runs(logs_dir)
    running = [r for r in runs if r.get("state") == "running"]
    return (running or runs or [None])[0]


def _remove_old_files(folder: Path) -> None:
    try:
        paths = sorted(folder.glob("run-*.json"), reverse=True)
    except OSError:
        return
    for path in paths[KEEP_FINISHED:]:
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
            if run.get("state") == "running" and pid_alive(int(run.get("pid") or 0)):
                continue
        except (OSError, ValueError, AttributeError):
            pass
        path.unlink(missing_ok=True)
