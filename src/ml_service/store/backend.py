"""Where the store's bytes live: the Backend interface and LocalBackend (a folder); s3.py has the object-store one.

Keys are '/'-separated paths relative to the store root (`3/CURRENT`, `3/<version>/meta.json`, `STATE`). A backend
gives the store small whole-object reads and writes (pointers, STATE, status.json, run.lock), exclusive and
conditional creation (the run lock), and versions as units: written into a local staging folder, committed whole
(local: one rename; S3: every file, meta.json last), listed only once complete, and read from a local folder that
numpy can memory-map (local: the version's own folder; S3: a verified copy in the replica's cache).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from ml_service.store.files import atomic_write, disk_full_reported, exclusive_lock, fsync_dir, unique_tmp_name, write_file

TMP_PREFIX = ".tmp-"  # a version being written; never visible as a version
DELETE_PREFIX = ".del-"  # a version (or at the root, a tenant) being deleted; never visible
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Stamp:
    """What a conditional replace compares: the object's modification time and its identity (local: inode+mtime; S3: ETag)."""

    mtime: float
    tag: str


class Backend(Protocol):
    """The storage operations of a ModelStore; every store read and write goes through one of these."""

    url: str  # for messages: a folder path or s3://bucket/prefix
    is_local: bool

    def where(self, key: str) -> str: ...
    def read(self, key: str) -> bytes: ...  # FileNotFoundError when absent
    def read_many(self, keys: list[str]) -> dict[str, bytes | Exception]: ...  # each object, or why it could not be read
    def write(self, key: str, data: bytes) -> None: ...  # whole object; readers see the old or the new bytes
    def create(self, key: str, data: bytes) -> bool: ...  # only if absent; False when it exists
    def replace_if(self, key: str, data: bytes, stamp: Stamp) -> bool: ...  # only if unchanged since `stamp`
    def stamp(self, key: str) -> Stamp | None: ...
    def touch(self, key: str) -> None: ...  # renew the modification time (a heartbeat)
    def delete(self, key: str) -> None: ...  # missing is fine
    def children(self, key: str) -> list[str]: ...  # names of the folders/prefixes directly under `key`
    def version_names(self, tenant: str) -> list[str]: ...  # complete versions only (any order)
    def version_sizes(self, tenant: str, version: str) -> dict[str, int]: ...
    def staging(self, tenant: str, version: str) -> Path: ...  # an empty local folder to write a version into
    def commit(self, staging: Path, tenant: str, version: str) -> None: ...
    def discard(self, staging: Path) -> None: ...
    def version_folder(self, tenant: str, version: str) -> Path: ...  # a local folder holding the version's files
    def forget_cached(self, tenant: str, version: str) -> None: ...
    def delete_version(self, tenant: str, version: str) -> None: ...
    def delete_tenant(self, tenant: str) -> list[str]: ...
    def remove_leftovers(self, tenant: str) -> list[str]: ...
    def lock(self, key: str) -> contextlib.AbstractContextManager[None]: ...


class LocalBackend:
    """The store in a local folder: today's layout, flock for writers, rename for atomic visibility."""

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def where(self, key: str) -> str:
        return str(self.path(key))

    # -- small objects -------------------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_many(self, keys: list[str]) -> dict[str, bytes | Exception]:
        found: dict[str, bytes | Exception] = {}
        for key in keys:
            try:
                found[key] = self.read(key)
            except OSError as exc:
                found[key] = exc
        return found

    def write(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)

    def create(self, key: str, data: bytes) -> bool:
        """A hard link of a complete temporary file: the name appears whole, and only if it did not exist."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unique_tmp_name(path)
        try:
            with disk_full_reported(path.parent):
                write_file(tmp, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: exclusive create, then the bytes (callers hold a guard)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            fsync_dir(path.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def replace_if(self, key: str, data: bytes, stamp: Stamp) -> bool:
        if self.stamp(key) != stamp:
            return False
        self.write(key, data)  # callers hold the guard flock, so nothing moves between the check and the write
        return True

    def stamp(self, key: str) -> Stamp | None:
        try:
            st = self.path(key).stat()
        except FileNotFoundError:
            return None
        return Stamp(st.st_mtime, f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}")

    def touch(self, key: str) -> None:
        os.utime(self.path(key))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def children(self, key: str) -> list[str]:
        folder = self.path(key)
        if not folder.is_dir():
            return []
        return [p.name for p in folder.iterdir() if p.is_dir()]

    # -- versions ------------------------------------------------------------------------------------------
    def version_names(self, tenant: str) -> list[str]:
        return self.children(tenant)  # a version folder appears by rename, complete

    def version_sizes(self, tenant: str, version: str) -> dict[str, int]:
        sizes = {}
        with contextlib.suppress(OSError):
            for path in self.path(f"{tenant}/{version}").iterdir():
                with contextlib.suppress(OSError):
                    sizes[path.name] = path.stat().st_size
        return sizes

    def staging(self, tenant: str, version: str) -> Path:
        folder = self.path(tenant) / f"{TMP_PREFIX}{version}"
        with disk_full_reported(folder.parent):
            folder.mkdir(parents=True)
        return folder

    def commit(self, staging: Path, tenant: str, version: str) -> None:
        tenant_dir = self.path(tenant)
        with disk_full_reported(tenant_dir):
            fsync_dir(staging)
            os.rename(staging, tenant_dir / version)
            fsync_dir(tenant_dir)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def version_folder(self, tenant: str, version: str) -> Path:
        folder = self.path(f"{tenant}/{version}")
        if not folder.is_dir():
            raise FileNotFoundError(f"no folder {folder}")
        return folder

    def forget_cached(self, tenant: str, version: str) -> None:
        return None  # the store's own folder is the only copy

    def delete_version(self, tenant: str, version: str) -> None:
        tenant_dir = self.path(tenant)
        doomed = tenant_dir / f"{DELETE_PREFIX}{version}"
        os.rename(tenant_dir / version, doomed)  # invisible at once; deleting the files may take a while
        shutil.rmtree(doomed, ignore_errors=True)
        fsync_dir(tenant_dir)

    def delete_tenant(self, tenant: str) -> list[str]:
        import secrets

        tenant_dir = self.path(tenant)
        if not tenant_dir.is_dir():
            return []
        doomed = self.root / f"{DELETE_PREFIX}{tenant}-{secrets.token_hex(3)}"
        os.rename(tenant_dir, doomed)  # invisible at once: tenants() only lists valid tenant names
        fsync_dir(self.root)
        shutil.rmtree(doomed, ignore_errors=True)
        return [str(tenant_dir)]

    def remove_deleted_tenants(self) -> list[str]:
        """Finish deleting tenant folders whose removal was interrupted (renamed to `.del-<tenant>-<random>`)."""
        removed = []
        for path in self.root.glob(f"{DELETE_PREFIX}*") if self.root.is_dir() else []:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        return removed

    def remove_leftovers(self, tenant: str) -> list[str]:
        """Delete folders of publishes or prunes that died midway (only called with the tenant's lock held)."""
        removed = []
        tenant_dir = self.path(tenant)
        if not tenant_dir.is_dir():
            return removed
        for path in tenant_dir.iterdir():
            if path.is_dir() and path.name.startswith((TMP_PREFIX, DELETE_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
            elif path.is_file() and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        return removed

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An flock on `key` (a tenant's `.lock`, the run lock's guard) where the platform has fcntl."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path):
            yield


def as_backend(where: "Path | str | Backend") -> "Backend":
    """A backend as given, or the LocalBackend of a folder path (callers and tests that know only a folder)."""
    if isinstance(where, (str, Path)):
        if "://" in str(where):
            raise ValueError(f"{where} is a URL, not a folder: pass the store's backend (ModelStore.backend)")
        return LocalBackend(Path(where))
    return where
