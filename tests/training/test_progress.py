"""Live training progress: the file a run writes, a dead run shown as dead, the CLI and /health-check showing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from ml_service.config import Settings
from ml_service.store import ModelStore
from ml_service.training.progress import ProgressWriter, current_run, read_runs
from tests.api.conftest import serve  # noqa: F401 - the fixture
from tests.api.support import closed_port
from tests.test_metrics import train_sample


class Result:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant


def test_fraction_rises_to_done_with_an_eta(tmp_path: Path) -> None:
    now = [100.0]
    writer = ProgressWriter(tmp_path, clock=lambda: now[0])
    seen = []
    writer.reporter("tenants", {"tenants": ["0", "1"]})
    for tenant in ("0", "1"):
        for stage in ("load", "train"):
            now[0] += 1.0
            writer.reporter("stage", {"tenant": tenant, "stage": stage})
            seen.append(current_run(tmp_path)["fraction"])
        for position in range(4):
            now[0] += 1.0
            writer.reporter("candidate", {"tenant": tenant, "candidate": f"c{position}", "position": position, "total": 4})
            run = current_run(tmp_path)
            seen.append(run["fraction"])
            assert run["candidate"] == f"c{position}" and run["tenant"] == tenant
        writer.reporter("tenant-done", {"result": Result(tenant)})
    assert seen == sorted(seen) and 0 < seen[-1] < 1
    assert current_run(tmp_path)["eta_s"] is not None
    writer.finish(True)
    run = current_run(tmp_path)
    assert run["state"] == "done" and run["fraction"] == 1.0


def test_a_run_whose_process_died_is_dead(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    writer = ProgressWriter(tmp_path, pid=child.pid)
    writer.tenants(["0"])
    run = read_runs(tmp_path)[0]
    assert run["state"] == "dead" and "ended without finishing" in run["message"]
    alive = ProgressWriter(tmp_path)  # this process: alive
    alive.tenants(["0"])
    assert current_run(tmp_path)["pid"] == alive.pid and current_run(tmp_path)["state"] == "running"


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    writer = ProgressWriter(tmp_path)
    for i in range(20):
        writer.tenants([str(i)])
    assert [p.name for p in (tmp_path / "progress").iterdir()] == [writer.path.name]


def test_train_command_writes_progress_and_health_check_shows_it(tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    done = train_sample(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "%" in done.stderr and "auto" not in done.stderr  # the CLI's progress lines carry the fraction done
    run = current_run(tmp_path / "logs")
    assert run is not None and run["state"] == "done" and run["tenants"] == ["0", "1", "2"]
    settings = Settings(totara_url=f"http://127.0.0.1:{closed_port()}", totara_key="k", models_dir=tmp_path / "models",
                        logs_dir=tmp_path / "logs")
    base = serve(settings, ModelStore(settings.recommender_dir))
    from ml_service.auth import signed_headers

    body = httpx.get(base + "/health-check", headers=signed_headers("k"), timeout=10).json()
    assert body["service"]["training_progress"]["state"] == "done"
    assert json.loads(json.dumps(body))["service"]["training_progress"]["fraction"] == 1.0


def test_an_auto_run_reports_its_candidates_and_finishes_done(tmp_path: Path) -> None:
    from ml_service.demo.generate import generate_export
    from ml_service.source.folder import FolderSource
    from ml_service.training.pipeline import run_training

    export = tmp_path / "export"
    generate_export(export, seed=3, users=80, items=40, interactions=1200, tenants=0)
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="auto", num_threads=1,
                        auto_time_budget_s=5)
    settings.ensure_dirs()
    writer = ProgressWriter(settings.logs_dir)
    snapshots: list[dict] = []

    def report(event: str, details: dict) -> None:
        writer.reporter(event, details)
        snapshots.append(dict(current_run(settings.logs_dir) or {}))

    result = run_training(settings, FolderSource(export), ModelStore(settings.recommender_dir), reporter=report)
    writer.finish(result.ok)
    candidates = [s["candidate"] for s in snapshots if s.get("candidate")]
    assert candidates[0] == "popular" and len(set(candidates)) >= 2  # auto tried the baseline and at least one more
    fractions = [s["fraction"] for s in snapshots]
    assert fractions == sorted(fractions)
    assert current_run(settings.logs_dir)["state"] == "done"


def test_a_dashboard_run_killed_mid_download_shows_as_dead(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import socket
    import time

    from ml_service.api.admin.actions import start_training

    with socket.socket() as silent:  # accepts connections (backlog) and never answers: the download hangs
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings = Settings(totara_url=f"http://127.0.0.1:{silent.getsockname()[1]}", totara_key="k",
                            models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="popular")
        message = start_training(settings)
        pid = int(re.search(r"process (\d+)", message).group(1))  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (current_run(settings.logs_dir) or {}).get("stage") == "fetch":
            time.sleep(0.2)
        assert current_run(settings.logs_dir)["state"] == "running"  # type: ignore[index]
        os.kill(pid, signal.SIGKILL)
        while time.monotonic() < deadline and current_run(settings.logs_dir)["state"] == "running":  # type: ignore[index]
            time.sleep(0.2)
        run = current_run(settings.logs_dir)
        assert run is not None and run["pid"] == pid and run["state"] == "dead"


def test_the_quick_pass_shows_its_tenant_without_moving_the_fraction(tmp_path: Path) -> None:
    writer = ProgressWriter(tmp_path)
    writer.reporter("tenants", {"tenants": ["0", "1"]})
    for tenant in ("0", "1"):
        writer.reporter("quick", {"tenant": tenant})
        run = current_run(tmp_path)
        assert (run["stage"], run["tenant"], run["fraction"], run["tenant_index"]) == ("quick", tenant, 0.0, 0)
    writer.reporter("stage", {"tenant": "0", "stage": "train"})
    assert current_run(tmp_path)["fraction"] > 0.0
