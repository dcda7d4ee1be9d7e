"""The store in S3 (or MinIO, or any S3-compatible store) through fsspec/s3fs, with a local cache of versions.

Same layout as a local folder under `s3://bucket/prefix/`. S3 has no rename, so a version becomes visible by its
`meta.json`, uploaded after every other file of the version: listings count a version only once its meta.json
exists, and CURRENT is written after that, so no reader is ever pointed at a partial version. Exclusive creation
(the run lock, a tenant's writer lock) is S3's conditional PutObject `If-None-Match: *`, and a stale lock is taken
over with `If-Match: <ETag>`, so two processes never both hold one. Served versions are downloaded once into
`cache_dir/<tenant>/<version>/` (to a temporary folder, then renamed) and memory-mapped from there; SHA-256 is
checked on every load, so a damaged cached copy is found and fetched again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ml_service.processes import pid_alive
from ml_service.store.backend import TMP_PREFIX, Stamp
from ml_service.store.files import disk_full_reported, fsync_dir
from ml_service.store.format import META_FILE, VERSION_RE, StoreError

T = TypeVar("T")
LOCK_STALE_S = 1800.0  # default age of a tenant's writer lock left by a killed writer (a publish takes seconds): ML_RUN_LOCK_STALE
LOCK_WAIT_S = 120.0  # how long a writer waits for another one's tenant lock before giving up


class StoreUnavailableError(OSError):
    """The object store cannot be reached or answered with an error: a passing condition (errno EIO), never a
    verdict on a version, so serving keeps what it has and retries."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(errno.EIO, f"the model store {url} cannot be reached: {type(cause).__name__}: {cause}")

    def __str__(self) -> str:
        return str(self.strerror)


class FsspecBackend:
    """`s3://bucket/prefix` through s3fs; versions cached under `cache_dir` for memory-mapping."""

    is_local = False

    def __init__(self, url: str, cache_dir: Path, *, endpoint_url: str | None = None, timeout_s: float = 10.0,
                 lock_stale_s: float = LOCK_STALE_S, fs: Any = None) -> None:
        if not url.startswith("s3://") or not url[5:].strip("/"):
            raise StoreError(f"ML_STORE_URL={url!r} is not s3://bucket/prefix")
        self.url = url.rstrip("/")
        self.base = self.url[5:]
        self.cache_dir = Path(cache_dir)
        self.lock_stale_s = lock_stale_s
        if fs is None:
            try:
                import s3fs
            except ImportError as exc:
                raise StoreError(f"ML_STORE_URL={url!r} needs s3fs: pip install 'ml-service[cluster]' ({exc})") from None
            fs = s3fs.S3FileSystem(
                endpoint_url=endpoint_url,
                use_listings_cache=False,  # pointers and listings must be read fresh every time
                skip_instance_cache=True,
                config_kwargs={"connect_timeout": timeout_s, "read_timeout": timeout_s, "retries": {"max_attempts": 2}},
            )
            fs.retries = 2  # s3fs's own retry loop (default 5, with growing sleeps) on top of botocore's
        self.fs = fs

    # -- plumbing ------------------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def where(self, key: str) -> str:
        return f"s3://{self._key(key)}"

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one s3fs call; a missing object stays FileNotFoundError, anything else is StoreUnavailableError."""
        try:
            return fn()
        except FileNotFoundError:
            raise
        except StoreError:
            raise
        except Exception as exc:  # botocore / aiohttp errors: endpoint down, timeouts, 5xx, refused credentials
            raise StoreUnavailableError(self.url, exc) from exc

    # -- small objects -------------------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        return self._call(lambda: self.fs.cat_file(self._key(key)))

    def read_many(self, keys: list[str]) -> dict[str, bytes | Exception]:
        """Concurrent GETs (hundreds of tenants' pointers cost about one round trip); an unreachable store raises."""
        if not keys:
            return {}
        paths = [self._key(k) for k in keys]
        found = self._call(lambda: self.fs.cat(paths, on_error="return"))
        out: dict[str, bytes | Exception] = {}
        for key, path in zip(keys, paths):
            value = found.get(path, FileNotFoundError(path))
            if isinstance(value, Exception) and not isinstance(value, FileNotFoundError):
                value = StoreUnavailableError(self.url, value)
            out[key] = value
        return out

    def write(self, key: str, data: bytes) -> None:
        self._call(lambda: self.fs.pipe_file(self._key(key), data))  # one PutObject: atomic for readers

    def create(self, key: str, data: bytes) -> bool:
        return self._conditional_put(key, data, mode="create")  # PutObject with If-None-Match: *

    def replace_if(self, key: str, data: bytes, stamp: Stamp) -> bool:
        return self._conditional_put(key, data, IfMatch=stamp.tag)

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        try:
            self._call(lambda: self.fs.pipe_file(self._key(key), data, **condition))
        except FileNotFoundError:  # If-Match on an object deleted meanwhile
            return False
        except StoreUnavailableError as exc:
            if _precondition_failed(exc.__cause__):
                return False
            raise
        return True

    def stamp(self, key: str) -> Stamp | None:
        try:
            info = self._call(lambda: self.fs.info(self._key(key), refresh=True))
        except FileNotFoundError:
            return None
        modified = info.get("LastModified")
        mtime = modified.timestamp() if hasattr(modified, "timestamp") else time.time()
        return Stamp(mtime, str(info.get("ETag") or ""))

    def touch(self, key: str) -> None:
        """Put the same bytes again (a new LastModified), only if nobody replaced the object meanwhile."""
        stamp = self.stamp(key)
        if stamp is None:
            raise FileNotFoundError(self.where(key))
        self.replace_if(key, self.read(key), stamp)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: self.fs.rm_file(self._key(key)))

    def upload(self, path: Path, key: str) -> None:
        """A local file to `key` (distributed training's staged exports; multipart for large files)."""
        self._call(lambda: self.fs.put_file(str(path), self._key(key)))

    def download(self, key: str, path: Path) -> None:
        """`key` to a local file; FileNotFoundError when there is no such object."""
        self._call(lambda: self.fs.get_file(self._key(key), str(path)))

    def delete_tree(self, key: str) -> None:
        """Every object under `key/` (a run's staged exports)."""
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: self.fs.rm(self._key(key), recursive=True))

    def children(self, key: str) -> list[str]:
        try:
            entries = self._call(lambda: self.fs.ls(self._key(key), detail=True, refresh=True))
        except FileNotFoundError:
            return []
        return [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]

    # -- versions ------------------------------------------------------------------------------------------
    def _tenant_files(self, tenant: str) -> dict[str, dict[str, int]]:
        """{version: {file: size}} of every object under `<tenant>/<version>/`, in one listing."""
        prefix = self._key(tenant) + "/"
        try:
            found = self._call(lambda: self.fs.find(prefix, detail=True))
        except FileNotFoundError:
            return {}
        versions: dict[str, dict[str, int]] = {}
        for name, info in found.items():
            parts = name[len(prefix):].split("/") if name.startswith(prefix) else []
            if len(parts) == 2:
                versions.setdefault(parts[0], {})[parts[1]] = int(info.get("size") or 0)
        return versions

    def version_names(self, tenant: str) -> list[str]:
        return [v for v, files in self._tenant_files(tenant).items() if VERSION_RE.fullmatch(v) and META_FILE in files]

    def version_sizes(self, tenant: str, version: str) -> dict[str, int]:
        return self._tenant_files(tenant).get(version, {})

    def staging(self, tenant: str, version: str) -> Path:
        folder = self.cache_dir / tenant / f"{TMP_PREFIX}{version}-{secrets.token_hex(3)}"
        with disk_full_reported(self.cache_dir):
            folder.mkdir(parents=True)
        return folder

    def commit(self, staging: Path, tenant: str, version: str) -> None:
        """Upload every file, meta.json last (it makes the version visible), then keep the folder as the cached copy."""
        files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != META_FILE)
        for path in files + [staging / META_FILE]:
            remote = self._key(f"{tenant}/{version}/{path.name}")
            self._call(lambda: self.fs.put_file(str(path), remote))
        self._keep_in_cache(staging, tenant, version)

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def version_folder(self, tenant: str, version: str) -> Path:
        """The cached copy, downloaded first when absent (FileNotFoundError when the store has no such complete version)."""
        folder = self.cache_dir / tenant / version
        if (folder / META_FILE).is_file():
            return folder
        sizes = self.version_sizes(tenant, version)
        if META_FILE not in sizes:
            raise FileNotFoundError(f"{self.where(f'{tenant}/{version}/')} has no {META_FILE}: no complete version")
        staging = self.staging(tenant, version)
        try:
            names = [n for n in sorted(sizes) if "/" not in n and not n.startswith(".")]
            remotes = [self._key(f"{tenant}/{version}/{n}") for n in names]
            with disk_full_reported(self.cache_dir):
                self._call(lambda: self.fs.get(remotes, [str(staging / n) for n in names]))  # concurrent GETs
            self._keep_in_cache(staging, tenant, version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def _keep_in_cache(self, staging: Path, tenant: str, version: str) -> None:
        folder = self.cache_dir / tenant / version
        try:
            os.rename(staging, folder)
            fsync_dir(folder.parent)
        except OSError:  # another worker process cached it first: theirs is the same bytes
            shutil.rmtree(staging, ignore_errors=True)

    def forget_cached(self, tenant: str, version: str) -> None:
        shutil.rmtree(self.cache_dir / tenant / version, ignore_errors=True)

    def prune_cache(self, tenant: str, keep: set[str]) -> list[str]:
        """Delete cached versions of `tenant` not in `keep` (a mapped file stays readable until unmapped)."""
        removed = []
        folder = self.cache_dir / tenant
        for path in folder.iterdir() if folder.is_dir() else []:
            if VERSION_RE.fullmatch(path.name) and path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        return removed

    def delete_version(self, tenant: str, version: str) -> None:
        """meta.json first (the version is invisible at once), then the other files."""
        self.delete(f"{tenant}/{version}/{META_FILE}")
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: self.fs.rm(self._key(f"{tenant}/{version}"), recursive=True))
        self.forget_cached(tenant, version)

    def delete_tenant(self, tenant: str) -> list[str]:
        names = self.version_names(tenant)
        for key in ("CURRENT", "PINNED"):
            self.delete(f"{tenant}/{key}")  # not served any more at once
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: self.fs.rm(self._key(tenant), recursive=True))
        shutil.rmtree(self.cache_dir / tenant, ignore_errors=True)
        return [self.where(f"{tenant}/{n}") for n in names] + [self.where(tenant)]

    def remove_deleted_tenants(self) -> list[str]:
        return []  # a tenant's objects are deleted directly; nothing is renamed aside

    def remove_leftovers(self, tenant: str) -> list[str]:
        """Objects of publishes that died before their meta.json (only called with the tenant's lock held)."""
        removed = []
        for version, files in self._tenant_files(tenant).items():
            if META_FILE not in files:
                with contextlib.suppress(FileNotFoundError):
                    self._call(lambda: self.fs.rm(self._key(f"{tenant}/{version}"), recursive=True))
                removed.append(self.where(f"{tenant}/{version}"))
        folder = self.cache_dir / tenant
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.name.startswith(TMP_PREFIX) and time.time() - path.stat().st_mtime > self.lock_stale_s:
                shutil.rmtree(path, ignore_errors=True)
        return removed

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """A writer lock object made with If-None-Match (stale ones taken over with If-Match), deleted after."""
        token = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(8)}).encode()
        deadline = time.monotonic() + LOCK_WAIT_S
        while not self.create(key, token):
            stamp = self.stamp(key)
            if stamp is not None and self._stale(key, stamp) and self.replace_if(key, token, stamp):
                break
            if time.monotonic() > deadline:
                raise StoreError(f"{self.where(key)} is held by another writer ({self._holder(key)}) for more than {LOCK_WAIT_S:.0f} s")
            time.sleep(0.2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if self.read(key) == token:
                    self.delete(key)

    def _stale(self, key: str, stamp: Stamp) -> bool:
        """Older than lock_stale_s, or written by a process of this host that is gone (a killed publish)."""
        if time.time() - stamp.mtime > self.lock_stale_s:
            return True
        try:
            holder = json.loads(self.read(key))
            return holder["host"] == socket.gethostname() and not pid_alive(int(holder["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _holder(self, key: str) -> str:
        try:
            return self.read(key).decode("utf-8", "replace")[:200]
        except OSError:
            return "unknown"


def _precondition_failed(exc: BaseException | None) -> bool:
    """True when an s3fs/botocore error is HTTP 412 (a conditional write lost) or 409 (a concurrent conditional write)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FileExistsError):  # s3fs's translation of If-None-Match failing
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            code = (response.get("Error") or {}).get("Code")
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return True
        if "PreconditionFailed" in str(exc) or "412" in str(exc) and "Precondition" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
