"""Durable local file operations of the store: whole-file writes, atomic replaces with unique temporary names.

This is the seam a remote backend (e.g. S3 through fsspec) would replace: every write of the store goes through
`write_file` (put a whole file) or `atomic_write` (replace a small pointer file so readers see old or new).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` and fsync it (the caller renames the folder or file into place)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def unique_tmp_name(path: Path) -> Path:
    """`<name>.<pid>.<random>.tmp` beside `path`: two writers never share a temporary file."""
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write a unique temporary file, fsync, rename over `path`, fsync the folder: readers see old or new, never half."""
    tmp = unique_tmp_name(path)
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op on Windows, where NTFS journals the rename)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_tmp_files(folder: Path, older_than_s: float) -> list[str]:
    """Delete `*.tmp` files in `folder` older than `older_than_s` (left by killed writers); return their paths."""
    removed = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        try:
            if path.name.endswith(TMP_SUFFIX) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(str(path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an flock on `path` (created if needed) for the block; on Windows (no fcntl) this does not lock."""
    try:
        import fcntl
    except ImportError:  # Windows: one writer at a time is the operator's job
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
