"""Durable writes: atomic replace with unique temporary names, the sweep of old temporary files, the flock helper."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ml_service.store.files import atomic_write, sweep_tmp_files, unique_tmp_name


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
