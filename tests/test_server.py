"""`ml-service serve` as a real process: scheduled training against the simulator, Totara down, several addresses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ml_service.auth import signed_headers
from ml_service.demo.run import SAMPLE_DIR
from ml_service.demo.simulator import TotaraSimulator
from ml_service.scheduler import STOPPED_MSG, SchedulerView, process_start_time
from ml_service.training.logs import DOWNLOAD_FAILED_MSG, read_summary

KEY = "server-test-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _serve(tmp_path: Path, env_extra: dict[str, str], extra_bind: str = "") -> Iterator[tuple[str, Path]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update({"ML_TOTARA_KEY": KEY, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"),
                "ML_BIND": f"127.0.0.1:{port} {extra_bind}".strip(), "ML_NUM_THREADS": "1", "ML_RECOMMENDATION_ALGORITHM": "popular"})
    env.update(env_extra)
    out = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(base + "/", timeout=1).status_code == 200, 60, "the server to listen")
        yield base, tmp_path / "logs" / "train_summary.log"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()


def _user_items(base: str) -> dict:
    params = {"totara_user_id": "2", "item_type": "engage_article", "tenant": "0", "n_items": "3"}
    return httpx.get(base + "/user-items", params=params, headers=signed_headers(KEY), timeout=5).json()


def test_first_training_at_start_then_every_interval(tmp_path: Path) -> None:
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        # 0.05 minutes = 3 s between runs
        for base, summary in _serve(tmp_path, {"ML_TOTARA_URL": simulator.url, "ML_RECOMMENDATION_RETRAIN_FREQ": "0.05"}):
            _wait(lambda: _user_items(base).get("success") is True, 120, "the first model to be served")
            _wait(lambda: len({r["TIMESTAMP"] for r in read_summary(summary)}) >= 2, 120, "a second scheduled run")
            runs = {r["TIMESTAMP"] for r in read_summary(summary)}
            assert len(runs) >= 2 and all(r["MSG"] == "success" for r in read_summary(summary))
            health = httpx.get(base + "/health-check", headers=signed_headers(KEY), timeout=5).json()
            assert health["success"] is True and health["totara"]["recommendation_model"] == "true"


def test_totara_down_at_start_keeps_serving_the_old_model(tmp_path: Path) -> None:
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:  # a first model, trained while Totara was up
        done = subprocess.run(
            [sys.executable, "-m", "ml_service.cli", "train", "--algorithm", "popular"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("ML_")}, "ML_TOTARA_URL": simulator.url,
                 "ML_TOTARA_KEY": KEY, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs")},
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there any more
    for base, summary in _serve(tmp_path, {"ML_TOTARA_URL": down, "ML_RECOMMENDATION_RETRAIN_FREQ": "0.02"}):
        assert _user_items(base)["success"] is True
        started = time.monotonic()
        health = httpx.get(base + "/health-check", headers=signed_headers(KEY), timeout=5).json()
        assert time.monotonic() - started < 2.0  # Totara's client gives up after 2 s
        assert health["success"] is False and health["errors"][0].startswith("Unable to communicate with Totara")
        _wait(lambda: any(r["TENANT_ID"] == "all" for r in read_summary(summary)), 120, "the failed run's row")
        assert [r for r in read_summary(summary) if r["TENANT_ID"] == "all"][0]["MSG"] == DOWNLOAD_FAILED_MSG
        assert _user_items(base)["success"] is True  # the old model still serves


def test_a_garbage_current_neither_stops_the_start_nor_the_scheduler(tmp_path: Path) -> None:
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ML_")}, "ML_TOTARA_URL": simulator.url,
               "ML_TOTARA_KEY": KEY, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs")}
        done = subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--algorithm", "popular"], env=env,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        current = tmp_path / "models" / "recommender" / "0" / "CURRENT"
        current.write_bytes(b"\xff\xfe../../etc\x00")  # tenant 0 comes first: the scheduler's start reads it
        for base, summary in _serve(tmp_path, {"ML_TOTARA_URL": simulator.url, "ML_RECOMMENDATION_RETRAIN_FREQ": "0.05"}):
            _wait(lambda: len(read_summary(summary)) >= 6, 120, "the scheduled run after one interval")
            _wait(lambda: current.read_bytes().isascii(), 30, "the scheduled run to replace the garbage CURRENT")
            assert _user_items(base)["success"] is True


def test_two_workers_on_two_addresses_share_the_models(tmp_path: Path) -> None:
    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        done = subprocess.run(
            [sys.executable, "-m", "ml_service.cli", "train", "--algorithm", "popular"],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("ML_")}, "ML_TOTARA_URL": simulator.url,
                 "ML_TOTARA_KEY": KEY, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs")},
            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        second = _free_port()
        port_env = {"ML_TOTARA_URL": simulator.url, "ML_WORKERS": "2"}
        for base, _ in _serve(tmp_path, port_env, extra_bind=f"[::1]:{second}"):
            assert _user_items(base)["success"] is True
            other = f"http://[::1]:{second}"
            _wait(lambda: httpx.get(other + "/", timeout=1).status_code == 200, 30, "the IPv6 address")
            assert _user_items(other)["success"] is True


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    """Each memory-mapped model array holds a descriptor: a server starts with its soft limit lifted."""
    code = (
        "import resource; from ml_service.server import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_file_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.strip() == "True"
# --- the training child's deadline and its end with the service (real `ml-service serve`, real children) ---


@contextlib.contextmanager
def _hung_totara() -> Iterator[str]:
    """A Totara that accepts connections and never answers: the training child hangs in its download."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _start_serve(tmp_path: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update({"ML_TOTARA_KEY": KEY, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"),
                "ML_BIND": f"127.0.0.1:{port}", "ML_NUM_THREADS": "1", "ML_READ_TIMEOUT": "600"})
    env.update(env_extra)
    out = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    return proc, f"http://127.0.0.1:{port}"


def _state(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "models" / "recommender" / "scheduler.json").read_text())
    except (OSError, ValueError):
        return {}


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def test_serve_kills_a_training_child_at_ml_train_timeout_and_on_sigterm(tmp_path: Path) -> None:
    with _hung_totara() as totara:
        # 0.05 minutes = 3 s deadline; 0.01 minutes between runs, so a new child starts right after each kill
        proc, _ = _start_serve(tmp_path, {"ML_TOTARA_URL": totara, "ML_TRAIN_TIMEOUT": "0.05",
                                          "ML_RECOMMENDATION_RETRAIN_FREQ": "0.01"})
        try:
            summary = tmp_path / "logs" / "train_summary.log"
            _wait(lambda: _state(tmp_path).get("child_pid"), 60, "the first training child")
            first = _state(tmp_path)["child_pid"]
            _wait(lambda: any("ML_TRAIN_TIMEOUT" in r["MSG"] for r in read_summary(summary)), 60, "the timeout row")
            assert process_start_time(first) is None
            _wait(lambda: _state(tmp_path).get("child_pid") not in (None, first), 60, "the next run's child")
            second = _state(tmp_path)["child_pid"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert process_start_time(second) is None  # the service took its child down with it
            assert read_summary(summary)[-1]["MSG"] == STOPPED_MSG
            assert not SchedulerView(tmp_path / "models" / "recommender" / "scheduler.json").running
        finally:
            _stop(proc)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux-only")
def test_kill_9_of_serve_takes_its_training_child_along_and_no_worker_reports_a_dead_run(tmp_path: Path) -> None:
    with _hung_totara() as totara:
        proc, base = _start_serve(tmp_path, {"ML_TOTARA_URL": totara, "ML_TRAIN_TIMEOUT": "0", "ML_WORKERS": "2"})
        orphans: list[int] = []
        try:
            _wait(lambda: httpx.get(base + "/", timeout=1).status_code == 200, 60, "the server to listen")
            _wait(lambda: _state(tmp_path).get("child_pid"), 60, "the training child")
            child = _state(tmp_path)["child_pid"]

            def training_running() -> bool:
                health = httpx.get(base + "/health-check", headers=signed_headers(KEY), timeout=10).json()
                return health["service"]["training_running"]

            assert training_running()
            orphans = [pid for pid in _children(proc.pid) if pid != child]  # the workers outlive a kill -9
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            _wait(lambda: process_start_time(child) is None, 30, "the orphaned child to die")
            assert _state(tmp_path)["running"] is True  # the file still says so ...
            assert not SchedulerView(tmp_path / "models" / "recommender" / "scheduler.json").running  # ... but
            assert training_running() is False  # a surviving worker does not believe it
        finally:
            _stop(proc)
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
