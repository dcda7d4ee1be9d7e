"""Durable local file operations of the store: whole-file writes, atomic replaces with unique temporary names.

LocalBackend (backend.py) writes through these: `write_file` (put a whole file) and `atomic_write` (replace a small
pointer file so readers see old or new). The S3 backend (s3.py) uses them only for its local cache's free-space errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"
# numpy's ndarray.tofile (used by np.save) reports a short write without an errno: "5312 requested and 5088 written".
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class DiskFullError(OSError):
    """A store write failed because its file system is full: says so plainly, with the folder, free bytes, what to do.

    An OSError (errno ENOSPC) so every handler of write errors keeps handling it; its message replaces numpy's
    "N requested and M written" and Python's bare "[Errno 28]" with one an operator can act on.
    """

    def __init__(self, folder: Path, cause: OSError) -> None:
        self.folder = Path(folder)
        self.free_bytes = free_bytes(self.folder)
        free = "unknown" if self.free_bytes is None else f"{self.free_bytes:,}"
        quota = " (or its disk quota is used up)" if cause.errno == errno.EDQUOT else ""
        message = (
            f"No space left on device: the file system holding {self.folder} is full{quota}, {free} bytes free "
            f"({cause}). Free space there (old versions: `ml-service models prune`) or move ML_MODELS_DIR to a "
            "bigger disk, then train again; the models already published keep serving"
        )
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means "no space": ENOSPC, EDQUOT, or numpy's errno-less short write."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return exc.errno is None and bool(_SHORT_WRITE.search(str(exc)))


def free_bytes(folder: Path) -> int | None:
    """Bytes free for this user on the file system of `folder` (or of its nearest existing parent); None if unknown."""
    for candidate in (Path(folder), *Path(folder).parents):
        try:
            return int(shutil.disk_usage(candidate).free)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def disk_full_reported(folder: Path) -> Iterator[None]:
    """Turn a "no space" OSError raised in the block into a DiskFullError naming `folder`; other errors pass."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(folder, exc) from exc


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
        with disk_full_reported(path.parent):
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
