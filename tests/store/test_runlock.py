"""The run lock with real processes: a busy lock names its holder, stale ones are taken over, holders never overlap."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.demo.run import SAMPLE_DIR
from ml_service.store import RUN_LOCK_FILE, RunLock, RunLockBusy

HELPER = Path(__file__).with_name("lock_helper.py")
REPO = Path(__file__).parents[2]


def _holder(root: Path, stale_s: float = 600.0) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HELPER), "hold", str(root), str(stale_s)], cwd=REPO,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_a_held_lock_is_refused_at_once_naming_the_holder(tmp_path: Path, holders: list) -> None:
    holder = _holder(tmp_path)
    holders.append(holder)
    lock = RunLock(tmp_path, stale_after_s=600.0)
    with pytest.raises(RunLockBusy) as caught:
        lock.acquire()
    assert caught.value.holder.pid == holder.pid and caught.value.holder.host == socket.gethostname()
    assert f"pid {holder.pid} on host {socket.gethostname()} (lock_helper), started 20" in str(caught.value)
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    with lock.held():
        assert json.loads((tmp_path / RUN_LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / RUN_LOCK_FILE).exists()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path, holders: list, caplog: pytest.LogCaptureFixture) -> None:
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert (tmp_path / RUN_LOCK_FILE).exists()  # a kill -9 leaves the file behind
    with caplog.at_level(logging.WARNING, logger="ml_service.store"):
        with RunLock(tmp_path, stale_after_s=600.0).held():
            assert json.loads((tmp_path / RUN_LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"process {holder.pid} is no longer running" in caplog.text


def _foreign_lock(root: Path, age_s: float) -> None:
    document = {"pid": 1, "host": "another-host.example", "started_at": time.time() - age_s, "command": "train", "token": "x"}
    (root / RUN_LOCK_FILE).write_text(json.dumps(document))
    os.utime(root / RUN_LOCK_FILE, (time.time() - age_s, time.time() - age_s))


def test_a_lock_without_heartbeat_for_longer_than_the_limit_is_taken_over(tmp_path: Path) -> None:
    _foreign_lock(tmp_path, age_s=30)
    with pytest.raises(RunLockBusy, match="pid 1 on host another-host.example"):
        RunLock(tmp_path, stale_after_s=60.0).acquire()  # another host: its pid cannot be checked, its age can
    _foreign_lock(tmp_path, age_s=90)
    with RunLock(tmp_path, stale_after_s=60.0).held():
        assert json.loads((tmp_path / RUN_LOCK_FILE).read_text())["host"] == socket.gethostname()


def test_a_garbage_lock_file_counts_as_held_until_stale(tmp_path: Path) -> None:
    (tmp_path / RUN_LOCK_FILE).write_text("{half")
    with pytest.raises(RunLockBusy, match="unreadable lock file"):
        RunLock(tmp_path, stale_after_s=60.0).acquire()
    os.utime(tmp_path / RUN_LOCK_FILE, (time.time() - 120, time.time() - 120))
    with RunLock(tmp_path, stale_after_s=60.0).held():
        pass


def test_a_live_holder_renews_its_heartbeat(tmp_path: Path, holders: list) -> None:
    holder = _holder(tmp_path, stale_s=1.0)
    holders.append(holder)
    first = (tmp_path / RUN_LOCK_FILE).stat().st_mtime
    deadline = time.monotonic() + 30
    while (tmp_path / RUN_LOCK_FILE).stat().st_mtime == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / RUN_LOCK_FILE).stat().st_mtime > first
    with pytest.raises(RunLockBusy):
        RunLock(tmp_path, stale_after_s=1.0).acquire()


def test_release_leaves_a_lock_that_was_taken_over(tmp_path: Path) -> None:
    lock = RunLock(tmp_path, stale_after_s=60.0)
    lock.acquire()
    _foreign_lock(tmp_path, age_s=0)  # as if another process had taken it over
    lock.release()
    assert json.loads((tmp_path / RUN_LOCK_FILE).read_text())["host"] == "another-host.example"


def test_processes_competing_for_the_lock_never_overlap(tmp_path: Path) -> None:
    log = tmp_path / "holds.log"
    processes = [
        subprocess.Popen([sys.executable, str(HELPER), "loop", str(tmp_path / "store"), str(log), "8"], cwd=REPO)
        for _ in range(4)
    ]
    for process in processes:
        assert process.wait(timeout=120) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 8 * 2
    for enter, leave in zip(lines[::2], lines[1::2]):  # every "in" is followed by the same process's "out"
        pid = enter.split()[0]
        assert (enter, leave) == (f"{pid} in", f"{pid} out"), lines
    assert not (tmp_path / "store" / RUN_LOCK_FILE).exists()


# ------------------------------------------------------------------------------------- the commands that take it
def _cli_env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    return {**clean, "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"), "ML_NUM_THREADS": "1"}


def test_train_while_another_run_holds_the_lock_exits_naming_it(tmp_path: Path, holders: list) -> None:
    holder = _holder(tmp_path / "models" / "recommender")
    holders.append(holder)
    done = subprocess.run(
        [sys.executable, "-m", "ml_service.cli", "train", "--source", str(SAMPLE_DIR), "--algorithm", "popular"],
        env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "Training not started: another training run holds" in done.stderr
    assert f"pid {holder.pid} on host {socket.gethostname()}" in done.stderr and "use --wait" in done.stderr
    assert not (tmp_path / "models" / "recommender" / "0").exists()  # nothing was trained


def test_train_wait_waits_for_the_holder_then_trains(tmp_path: Path, holders: list) -> None:
    holder = _holder(tmp_path / "models" / "recommender")
    holders.append(holder)
    train = subprocess.Popen(
        [sys.executable, "-m", "ml_service.cli", "train", "--wait", "--source", str(SAMPLE_DIR), "--algorithm", "popular"],
        env=_cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    holders.append(train)
    waiting = threading.Event()
    stderr: list[str] = []

    def read() -> None:
        for line in train.stderr:
            stderr.append(line)
            if line.startswith("Waiting for the training run of pid"):
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert waiting.wait(60), "".join(stderr)
    assert train.poll() is None and not (tmp_path / "models" / "recommender" / "0").exists()
    holder.stdin.write("\n")
    holder.stdin.flush()
    out, _ = train.communicate(timeout=300)
    reader.join(10)
    assert train.returncode == 0, "".join(stderr)
    assert "popular" in out and (tmp_path / "models" / "recommender" / "0" / "CURRENT").exists()


def test_batch_refuses_to_start_while_a_training_run_holds_the_lock(
    tmp_path: Path, holders: list, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ml_service.batch import batch_main

    for name, value in _cli_env(tmp_path).items():
        if name.startswith("ML_"):
            monkeypatch.setenv(name, value)
    holder = _holder(tmp_path / "models" / "recommender")
    holders.append(holder)
    data = tmp_path / "export"
    data.mkdir()
    code = batch_main(["--query", "popular", "--data_path", str(data)])
    assert code == 1
    assert "ml-service batch: not started: another training run holds" in capsys.readouterr().err
    assert not (data / "ml_started").exists()
