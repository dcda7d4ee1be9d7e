"""Downloads against a misbehaving real HTTP server: size limit (declared and streamed), total deadline, stale staging."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from ml_service.config import Settings
from ml_service.demo.simulator import TotaraSimulator
from ml_service.source.staging import STAMP_FORMAT, sweep_stale_staging
from ml_service.source.totara_http import TotaraHttpSource
from tests.source.hostile_server import HostileServer

KEY = "s3cret-key"


def fetch(url: str, staging: Path, **changes: object):  # type: ignore[no-untyped-def]
    settings = Settings(totara_url=url, totara_key=KEY, download_retry_wait_s=0.01, download_retries=0,
                        connect_timeout_s=2.0, read_timeout_s=2.0).with_(**changes)
    return TotaraHttpSource(settings, staging, sleep=lambda s: None).fetch()


def leftovers(staging: Path) -> list[str]:
    return sorted(p.name for p in staging.rglob("*") if p.is_file())


def test_declared_size_over_the_limit_fails_before_reading(tmp_path: Path) -> None:
    with HostileServer() as server:
        server.behaviour["user_interactions_0.csv"] = "huge-declared"
        snapshot = fetch(server.url, tmp_path / "staging", max_export_mb=1)
    message = snapshot.failed["0"]
    assert "announced 10737418240 bytes" in message and "1 MB" in message and "ML_MAX_EXPORT_MB" in message
    assert "user_interactions_0.csv" in message
    assert leftovers(snapshot.root) == ["tenants.csv"]


@pytest.mark.parametrize("kind", ["chunked", "until-close"])
def test_a_body_without_length_is_cut_at_the_limit(tmp_path: Path, kind: str) -> None:
    with HostileServer() as server:
        server.behaviour["user_data_0.csv"] = kind
        server.body_bytes = 64 << 20
        snapshot = fetch(server.url, tmp_path / "staging", max_export_mb=1)
    message = snapshot.failed["0"]
    assert "user_data_0.csv: the body passed the limit of 1 MB" in message and "announced size: none" in message
    assert server.sent["user_data_0.csv"] < 16 << 20  # the client hung up near the limit, not after 64 MB
    assert leftovers(snapshot.root) == ["tenants.csv"]


@pytest.mark.parametrize("kind", ["trickle", "trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(tmp_path: Path, kind: str) -> None:
    """One byte every 0.2 s never trips the 2 s read timeout; only the total deadline ends the transfer."""
    with HostileServer() as server:
        server.behaviour["user_interactions_0.csv"] = kind
        server.trickle_for_s = 30.0  # the old client would wait all of it, then report a short body
        snapshot = fetch(server.url, tmp_path / "staging", download_deadline_s=1.5)
    message = snapshot.failed["0"]
    assert "longer than 1.5 s (ML_DOWNLOAD_DEADLINE)" in message
    assert 3 <= server.sent["user_interactions_0.csv"] < 100  # ~8 bytes in 1.5 s; nowhere near the 30 s run
    assert leftovers(snapshot.root) == ["tenants.csv"]


def test_good_files_pass_the_limits(tmp_path: Path) -> None:
    with HostileServer() as server:
        snapshot = fetch(server.url, tmp_path / "staging", max_export_mb=1, download_deadline_s=5.0)
    assert snapshot.failed == {} and snapshot.usable_tenants == ["0"]
    snapshot.cleanup()


def _folder(staging: Path, pid: int, created: float) -> Path:
    stamp = datetime.fromtimestamp(created, timezone.utc).strftime(STAMP_FORMAT)
    folder = staging / f"{stamp}-{pid}-abc123"
    folder.mkdir(parents=True)
    (folder / "user_interactions_0.csv.part").write_bytes(b"half a file")
    return folder


def test_staging_of_a_dead_or_reused_pid_is_swept_a_live_ones_kept(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(done.stdout)
    now = time.time()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _folder(staging, dead_pid, now - 60)
        kept_live = _folder(staging, live.pid, now + 5)  # made after the live process started: its own
        reused = _folder(staging, live.pid, now - 3600)  # made an hour before that process existed: pid reused
        own = _folder(staging, os.getpid(), now - 60)
        other = staging / "not-a-staging-folder"
        other.mkdir()
        swept = sweep_stale_staging(staging)
        assert sorted(swept) == sorted([dead, reused])
        assert not dead.exists() and not reused.exists()
        assert kept_live.exists() and own.exists() and other.exists()
    finally:
        live.kill()
        live.wait(timeout=10)


def test_the_next_fetch_sweeps_what_a_killed_run_left(tmp_path: Path, make_export: Callable[..., Path]) -> None:
    staging = tmp_path / "staging"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = _folder(staging, int(done.stdout), time.time() - 600)
    with TotaraSimulator(make_export(tmp_path / "export", ["0"]), KEY) as sim:
        snapshot = fetch(sim.url, staging)
    assert not left.exists()
    assert [p for p in staging.iterdir()] == [snapshot.root]
    snapshot.cleanup()
