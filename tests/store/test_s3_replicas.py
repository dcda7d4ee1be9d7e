"""Two stateless serving replicas (`ml-service serve --no-scheduler`, separate processes) on one S3 store (moto):
they switch to each new version while a client hammers both, and keep serving through a store outage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from ml_service.auth import signed_headers
from tests.store.s3_support import S3, moto_s3
from tests.store.support import factors_model

KEY = "replica-test-key"
POLL_S = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_replica(folder: Path, store_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`ml-service serve --no-scheduler` with its own models folder (its cache) on the shared store."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "AWS_"))}
    env.update({
        "ML_TOTARA_KEY": KEY, "ML_TOTARA_URL": "http://127.0.0.1:9", "ML_MODELS_DIR": str(folder / "models"),
        "ML_LOGS_DIR": str(folder / "logs"), "ML_BIND": f"127.0.0.1:{port}", "ML_STORE_POLL": str(POLL_S),
        "ML_STORE_TIMEOUT": "1", "ML_LOAD_RETRY_WAIT": "0.2", "ML_LOAD_RETRY_MAX_WAIT": "1", **store_env,
    })
    folder.mkdir(parents=True, exist_ok=True)
    out = (folder / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve", "--no-scheduler"], env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(base + "/", timeout=1).status_code == 200, 90, f"the replica on {base} to listen")
    except AssertionError:
        proc.kill()
        raise AssertionError((folder / "serve.log").read_text()[-3000:]) from None
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def health(base: str) -> dict[str, Any]:
    return httpx.get(base + "/health-check", headers=signed_headers(KEY), timeout=5).json()["service"]


def served_version(base: str, tenant: str = "3") -> str | None:
    return health(base)["tenants"].get(tenant, {}).get("version")


class Hammer:
    """Threads sending signed /user-items requests round-robin to every replica until stopped; counts outcomes."""

    def __init__(self, bases: list[str], threads: int = 2) -> None:
        self.bases = bases
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> "Hammer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self, offset: int) -> None:
        params = {"totara_user_id": "12", "item_type": "engage_article", "tenant": "3", "n_items": "3"}
        with httpx.Client(timeout=5) as client:
            i = offset
            while not self._stop.is_set():
                base = self.bases[i % len(self.bases)]
                i += 1
                try:
                    response = client.get(base + "/user-items", params=params, headers=signed_headers(KEY))
                    ok = response.status_code == 200 and isinstance(response.json(), (list, dict))
                    self.outcomes["ok" if ok else "failed"] += 1
                    if not ok:
                        self.failures.append(f"{base}: HTTP {response.status_code} {response.text[:200]}")
                except (httpx.HTTPError, ValueError) as exc:
                    self.outcomes["failed"] += 1
                    self.failures.append(f"{base}: {type(exc).__name__}: {exc}")


@pytest.fixture
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


def test_two_replicas_switch_versions_under_load_and_ride_out_a_store_outage(s3: S3, tmp_path: Path) -> None:
    publisher = s3.store(tmp_path / "publisher", prefix="site")  # the orchestrator: straight to moto, never cut
    first = publisher.publish("3", factors_model(seed=0))
    replicas = [start_replica(tmp_path / f"replica{i}", s3.env("site", via_relay=True)) for i in range(2)]
    bases = [base for _, base in replicas]
    try:
        wait_for(lambda: all(served_version(b) == first for b in bases), 30, "both replicas to serve the first version")
        with Hammer(bases) as hammer:
            for seed in (1, 2, 3):
                version = publisher.publish("3", factors_model(seed=seed))
                wait_for(lambda: all(served_version(b) == version for b in bases), 30, f"both replicas to serve {version}")
            # The store goes away: both keep answering, say so in /health-check, and keep their version.
            s3.relay.cut()
            wait_for(lambda: all(health(b)["store"]["reachable"] is False for b in bases), 30, "the outage in /health-check")
            report = health(bases[0])["store"]
            assert "cannot be reached" in report["error"] and report["unreachable_seconds"] >= 0
            during = publisher.publish("3", factors_model(seed=4))  # published while the replicas cannot see it
            time.sleep(4 * POLL_S)
            assert all(served_version(b) == version for b in bases)
            served_during = hammer.outcomes["ok"]
            s3.relay.restore()
            wait_for(lambda: all(health(b)["store"]["reachable"] is True for b in bases), 30, "the store to be reachable again")
            wait_for(lambda: all(served_version(b) == during for b in bases), 30, "both replicas to catch up")
        assert hammer.failures == [], hammer.failures[:5]
        assert hammer.outcomes["ok"] > served_during > 0
        for folder in (tmp_path / "replica0", tmp_path / "replica1"):
            cached = {p.name for p in (folder / "models" / "store-cache" / "3").iterdir()}
            assert cached == {during}, cached  # the replica's cache holds what it serves, older versions are dropped
    finally:
        for proc, _ in replicas:
            stop(proc)
