"""A full disk during publish (ML_MODELS_DIR on a small tmpfs, filled up): the run fails, nothing half-written
is visible or loaded, the previous models keep serving, and once space is freed the next run succeeds.

Needs root and permission to mount (a container without CAP_SYS_ADMIN skips it, saying so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.demo.run import SAMPLE_DIR
from tests.faults.harness import (
    TENANTS,
    Service,
    current_versions,
    free_port,
    leftovers,
    run_train,
    serving_problems,
    service_env,
    store_of,
)

TMPFS_SIZE = "4m"
PAGE = 4096  # tmpfs allocates whole pages


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty tmpfs of TMPFS_SIZE mounted at tmp_path/models, unmounted afterwards."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root (mount -t tmpfs)")
    mount_point = tmp_path / "models"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Write a filler file so that only about `leave_bytes` stay free on folder's file system."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 20)
        while remaining > 0:
            try:
                remaining -= handle.write(block[: min(len(block), remaining)])
            except OSError:
                break
    return filler


def _env_on(small_disk: Path, trained_template: Path) -> dict[str, str]:
    shutil.copytree(trained_template / "models", small_disk, dirs_exist_ok=True)
    return service_env(small_disk.parent, f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize("leave", ["half a version", "nothing"])
def test_full_disk_during_publish_keeps_the_previous_models(small_disk: Path, trained_template: Path, leave: str) -> None:
    workdir = small_disk.parent
    env = _env_on(small_disk, trained_template)
    before = current_versions(env)
    version_bytes = sum(p.stat().st_size for p in (store_of(env).root / "0" / before["0"]).iterdir())
    with Service(env, workdir / "server.log") as service:
        assert serving_problems(service, env, before) == []
        filler = _fill(small_disk, version_bytes // 2 if leave == "half a version" else 0)
        done = run_train(env, "--source", str(SAMPLE_DIR))
        assert done.returncode != 0, done.stdout
        assert "No space left on device" in done.stderr or "requested and" in done.stderr, done.stderr[-2000:]
        assert current_versions(env) == before
        assert leftovers(env) == []
        assert serving_problems(service, env, before) == []

        filler.unlink()
        done = run_train(env, "--source", str(SAMPLE_DIR))
        assert done.returncode == 0, done.stdout + done.stderr[-2000:]
        after = current_versions(env)
        assert all(after[t] != before[t] for t in TENANTS)
        assert serving_problems(service, env, after) == []


def test_full_disk_is_reported_as_a_full_disk(small_disk: Path, trained_template: Path) -> None:
    env = _env_on(small_disk, trained_template)
    version = current_versions(env)["0"]
    _fill(small_disk, sum(p.stat().st_size for p in (store_of(env).root / "0" / version).iterdir()) // 2)
    done = run_train(env, "--source", str(SAMPLE_DIR))
    assert done.returncode != 0
    failures = [line for line in done.stdout.splitlines() if line.startswith("tenant 0:")]
    assert failures and "No space left on device" in failures[0] and str(small_disk) in failures[0], failures
    assert "bytes free" in failures[0] and "ML_MODELS_DIR" in failures[0], failures
    assert leftovers(env) == []


def test_full_disk_run_ends_with_its_summary_not_a_traceback(small_disk: Path, trained_template: Path) -> None:
    env = _env_on(small_disk, trained_template)
    _fill(small_disk, PAGE)  # room for the run lock's file, none for a version nor for status.json
    done = run_train(env, "--source", str(SAMPLE_DIR))
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "cannot record the training status" in done.stderr, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines and lines[0].split()[:2] == ["tenant", "state"], done.stdout  # the summary table's header
    failures = [line for line in lines if line.startswith("tenant ") and ":" in line]
    assert [line.split(":")[0] for line in failures] == [f"tenant {t}" for t in TENANTS], done.stdout
    assert all("No space left on device" in line for line in failures), failures


def test_no_byte_free_says_the_run_did_not_start(small_disk: Path, trained_template: Path) -> None:
    env = _env_on(small_disk, trained_template)
    before = current_versions(env)
    _fill(small_disk, 0)
    done = run_train(env, "--source", str(SAMPLE_DIR))
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Training not started: cannot take the run lock" in done.stderr, done.stderr[-2000:]
    assert "No space left on device" in done.stderr and str(small_disk) in done.stderr, done.stderr[-2000:]
    assert current_versions(env) == before
