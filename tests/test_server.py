"""`ml-service serve` as a real process: scheduled training against the simulator, Totara down, several addresses."""

from __future__ import annotations

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
