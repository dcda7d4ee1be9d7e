"""Durable writes: atomic replace with unique temporary names, the sweep of old temporary files, the flock helper."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from ml_service.store.files import DiskFullError, atomic_write, disk_full_reported, sweep_tmp_files, unique_tmp_name


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "STATE"
    atomic_write(target, b"one\n")
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n" and [p.name for p in tmp_path.iterdir()] == ["STATE"]


def test_temporary_names_are_unique_per_call(tmp_path: Path) -> None:
    names = {unique_tmp_name(tmp_path / "status.json").name for _ in range(50)}
    assert len(names) == 50 and all(n.startswith(f"status.json.{os.getpid()}.") and n.endswith(".tmp") for n in names)


def test_sweep_removes_only_old_temporary_files(tmp_path: Path) -> None:
    old, fresh, other = tmp_path / "STATE.123.abcd.tmp", tmp_path / "status.json.456.ef01.tmp", tmp_path / "STATE"
    for path in (old, fresh, other):
        path.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(other, (time.time() - 7200, time.time() - 7200))
    assert sweep_tmp_files(tmp_path, older_than_s=3600) == [str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, other.name])


@pytest.mark.parametrize(
    "cause",
    [OSError("5312 requested and 5088 written"), OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EDQUOT, "Disk quota exceeded")],
    ids=["numpy short write", "ENOSPC", "EDQUOT"],
)
def test_a_full_disk_is_reported_plainly_with_folder_and_free_bytes(tmp_path: Path, cause: OSError) -> None:
    folder = tmp_path / "recommender" / "0"  # need not exist: free bytes come from its nearest existing parent
    with pytest.raises(DiskFullError) as raised, disk_full_reported(folder):
        raise cause
    message = str(raised.value)
    assert message.startswith("No space left on device: the file system holding " + str(folder) + " is full")
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, OSError) and raised.value.__cause__ is cause
    assert raised.value.free_bytes is not None and f"{raised.value.free_bytes:,} bytes free" in message
    assert raised.value.free_bytes <= shutil.disk_usage(tmp_path).total
    assert str(cause) in message and "ML_MODELS_DIR" in message


@pytest.mark.parametrize("cause", [PermissionError(errno.EACCES, "Permission denied"), OSError("something else")])
def test_other_write_errors_pass_unchanged(tmp_path: Path, cause: OSError) -> None:
    with pytest.raises(OSError) as raised, disk_full_reported(tmp_path):
        raise cause
    assert raised.value is cause
