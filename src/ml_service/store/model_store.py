"""ModelStore: tenants' versions under `<root>/<tenant>/<version>/`, published atomically, pinned, rolled back, pruned.

Layout: `<tenant>/CURRENT` names the served version; `<tenant>/PINNED` (optional) holds a version the operator
pinned: publishing still stores new versions but does not move CURRENT. Writers of one tenant are serialised
with a lock on `<tenant>/.lock` (local: an flock where the platform has fcntl; S3: a conditional write); readers
never lock: all they can see is complete. Where the bytes live is the Backend's business (backend.py, s3.py).
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service.models.base import TrainedModel
from ml_service.store import status as status_files
from ml_service.store.backend import DELETE_PREFIX, LOCK_FILE, TMP_PREFIX, Backend, LocalBackend
from ml_service.store.files import disk_full_reported
from ml_service.store.format import (
    META_FILE,
    VERSION_RE,
    BadPointerError,
    CorruptVersionError,
    LoadedModel,
    StoreError,
    check_publishable,
    check_sizes,
    check_version_name,
    created_from_id,
    load_version,
    meta_from_bytes,
    new_version_id,
    write_version,
)

if TYPE_CHECKING:
    from ml_service.config import Settings

log = logging.getLogger("ml_service.store")

CURRENT_FILE = "CURRENT"
PINNED_FILE = "PINNED"
__all__ = ["CURRENT_FILE", "DELETE_PREFIX", "LOCK_FILE", "PINNED_FILE", "TMP_PREFIX", "TENANT_RE", "ModelStore", "VersionInfo"]
TENANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class VersionInfo:
    """One published version as `versions()` lists it; `ok`/`error` come from a cheap check (meta, file sizes)."""

    version: str
    created_at: str
    algorithm: str
    metrics: dict[str, Any]
    size_bytes: int
    is_current: bool
    ok: bool
    error: str = ""
    is_pinned: bool = False


class ModelStore:
    """Tenants' model versions with a `CURRENT` pointer each; see the module docstring for the layout."""

    def __init__(self, root: Path | str, keep_versions: int = 5, *, backend: Backend | None = None) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
        self.backend: Backend = backend if backend is not None else LocalBackend(Path(root))
        self.root: Path | str = Path(root) if self.backend.is_local else self.backend.url  # for messages
        self.keep_versions = keep_versions

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ModelStore":
        """The store ML_STORE_URL names: a folder (default: `recommender` in ML_MODELS_DIR) or s3://bucket/prefix."""
        url = settings.store_url
        if url.startswith("s3://"):
            from ml_service.store.s3 import FsspecBackend

            backend = FsspecBackend(url, settings.store_cache_dir, endpoint_url=settings.s3_endpoint_url,
                                    timeout_s=settings.store_timeout_s, lock_stale_s=settings.run_lock_stale_minutes * 60.0)
            return cls(url, settings.keep_versions, backend=backend)
        return cls(Path(url) if url else settings.recommender_dir, settings.keep_versions)

    # ----------------------------------------------------------------------------------------- reading
    def tenants(self) -> list[str]:
        """Tenants with a folder in the store (published or not), sorted numerically where possible."""
        names = [n for n in self.backend.children("") if TENANT_RE.fullmatch(n)]
        return sorted(names, key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n))

    def current_version(self, tenant: str) -> str | None:
        """The version CURRENT names, or None when the tenant has never been published.

        BadPointerError (a StoreError) when CURRENT cannot be read or holds no version id: callers that must go on
        (serving, the status of a run, the scheduler) catch it; the next publish replaces the file.
        """
        return self._read_pointer(tenant, CURRENT_FILE)

    def pinned_version(self, tenant: str) -> str | None:
        """The version the tenant is pinned to, or None when it follows training."""
        return self._read_pointer(tenant, PINNED_FILE)

    def versions(self, tenant: str) -> list[VersionInfo]:
        """Every complete version of a tenant, newest first, each with a cheap integrity check."""
        self._tenant_dir(tenant)
        current = self._current_or_none(tenant)
        pinned = self._pointer_or_none(tenant, PINNED_FILE)
        infos = []
        for name in self._version_names(tenant):
            error = ""
            meta: dict[str, Any] = {}
            sizes = self.backend.version_sizes(tenant, name)
            try:
                meta = self.read_meta(tenant, name)
                check_sizes(tenant, name, meta, sizes)
            except CorruptVersionError as exc:
                error = f"{exc.file}: {exc.problem}"
            infos.append(
                VersionInfo(
                    version=name,
                    created_at=str(meta.get("created_at") or created_from_id(name)),
                    algorithm=str(meta.get("algorithm", "")),
                    metrics=dict(meta.get("metrics") or {}),
                    size_bytes=sum(sizes.values()),
                    is_current=name == current,
                    ok=not error,
                    error=error,
                    is_pinned=name == pinned,
                )
            )
        return infos

    def load(self, tenant: str, version: str | None = None, *, mmap: bool = True, verify_hashes: bool = True) -> LoadedModel:
        """Read and validate a version (default: the current one), arrays memory-mapped read-only when mmap.

        verify_hashes=False skips the SHA-256 check (sizes, dtypes and shapes are still checked). Without an
        explicit version, a corrupt current version is skipped with a warning for the newest good older one
        (then any good newer one); StoreError when there is none. An explicit version is never substituted.
        """
        tenant_dir = self._tenant_dir(tenant)
        if version is not None:
            check_version_name(version)
            return self._load_version(tenant, version, mmap=mmap, hashes=verify_hashes)
        names = self._version_names(tenant)
        current = self._current_or_none(tenant)
        if current is None and not names:
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        if current is None:
            raise StoreError(
                f"tenant {tenant} has no {CURRENT_FILE} file in {tenant_dir}: no publish completed; "
                f"use `ml-service models rollback {tenant} VERSION` to choose one of {', '.join(names)}"
            )
        older = [n for n in names if n < current]
        newer = [n for n in names if n > current]
        errors = []
        for name in [current] + older + newer:
            if name not in names:
                errors.append(f"{name}: the folder is missing")
                continue
            try:
                loaded = self._load_version(tenant, name, mmap=mmap, hashes=verify_hashes)
            except CorruptVersionError as exc:
                errors.append(f"{name}: {exc.file}: {exc.problem}")
                continue
            if name != current:
                log.warning("tenant %s: current model version is unusable (%s); serving version %s instead", tenant, errors[0], name)
            return loaded
        raise StoreError(f"tenant {tenant} has no usable model version in {tenant_dir}: " + "; ".join(errors))

    def tenant_stamp(self, tenant: str) -> object:
        """Changes when the tenant's versions change (local: the folder's mtime, which every publish, rollback and
        prune changes by a rename); on an object store, the listing itself (there is no cheaper change signal)."""
        self._tenant_dir(tenant)
        if self.backend.is_local:
            return Path(self.backend.where(tenant)).stat().st_mtime_ns
        return tuple(self._version_names(tenant))

    def read_meta(self, tenant: str, version: str) -> dict[str, Any]:
        """A version's meta.json, checked for the keys every reader relies on (CorruptVersionError if not)."""
        try:
            self._tenant_dir(tenant)
            check_version_name(version)
            raw = self.backend.read(f"{tenant}/{version}/{META_FILE}")
        except FileNotFoundError:
            raise CorruptVersionError(tenant, version, META_FILE, "the file is missing") from None
        except OSError as exc:
            if not self.backend.is_local:
                raise  # the store is unreachable: a passing condition, not a damaged version
            raise CorruptVersionError(tenant, version, META_FILE, f"not valid JSON ({exc})") from None
        return meta_from_bytes(tenant, version, raw)

    def _load_version(self, tenant: str, version: str, *, mmap: bool, hashes: bool) -> LoadedModel:
        """Load from the backend's local folder of the version; a cached copy that fails its check is fetched again."""
        try:
            folder = self.backend.version_folder(tenant, version)
        except FileNotFoundError:
            raise StoreError(f"tenant {tenant} has no model version {version} in {self.backend.where(tenant)}") from None
        try:
            return load_version(tenant, version, folder, mmap=mmap, hashes=hashes)
        except CorruptVersionError:
            if self.backend.is_local:
                raise
            self.backend.forget_cached(tenant, version)  # the local copy was damaged; the store's may be fine
            return load_version(tenant, version, self.backend.version_folder(tenant, version), mmap=mmap, hashes=hashes)

    def state_token(self) -> str:
        """Changes whenever a tenant's current pointer changes (one small read): servers poll it to hot-swap."""
        return status_files.state_token(self.backend)

    def read_status(self) -> dict[str, dict]:
        """The per-tenant states `write_status` saved last ({} when none or unreadable, with a warning)."""
        return status_files.read_status(self.backend)

    # ----------------------------------------------------------------------------------------- writing
    def publish(self, tenant: str, model: TrainedModel) -> str:
        """Store a new version and make it current atomically (unless the tenant is pinned); return its id.

        Refuses inconsistent models, NaN/inf arrays and unknown item types (StoreError naming the array). Once
        CURRENT has switched the publish has succeeded: a later failure (the STATE token, pruning) is logged only.
        """
        check_publishable(model, tenant)
        tenant_dir = self._tenant_dir(tenant)
        with self._lock(tenant):
            self.backend.remove_leftovers(tenant)
            version = new_version_id(self._version_names(tenant))
            tmp = self.backend.staging(tenant, version)
            try:
                with disk_full_reported(tmp.parent):
                    write_version(tmp, tenant, version, model)
                self.backend.commit(tmp, tenant, version)  # complete before anything can point at it
            except BaseException:
                self.backend.discard(tmp)  # a half-written version is never left behind
                raise
            pinned = self._pin_of_publish(tenant, tenant_dir)
            if pinned is not None:
                log.info("tenant %s is pinned to %s: version %s is stored but not served", tenant, pinned, version)
                self._after_switch(tenant, tenant_dir, switched=False)
            else:
                self.backend.write(f"{tenant}/{CURRENT_FILE}", (version + "\n").encode("ascii"))
                self._after_switch(tenant, tenant_dir, switched=True)
        return version

    def rollback(self, tenant: str, version: str | None = None) -> str:
        """Make `version` current (None: the newest good version older than the current); return it.

        Refused for a pinned tenant: `pin` to another version or `unpin` first (the pin is the operator's choice).
        """
        tenant_dir = self._tenant_dir(tenant)
        if not self._tenant_exists(tenant):
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        with self._lock(tenant):
            pinned = self._pointer_or_none(tenant, PINNED_FILE)
            if pinned is not None:
                raise StoreError(
                    f"tenant {tenant} is pinned to version {pinned}: use `ml-service models pin {tenant} VERSION` "
                    f"to serve another version, or `ml-service models unpin {tenant}` first"
                )
            version = self._choose_target(tenant, tenant_dir, version)
            if version != self._current_or_none(tenant):
                self._switch_current(tenant, version)
        return version

    def pin(self, tenant: str, version: str | None = None) -> str:
        """Serve `version` (default: the current one) and keep serving it whatever training publishes; return it."""
        tenant_dir = self._tenant_dir(tenant)
        if not self._tenant_exists(tenant):
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        with self._lock(tenant):
            current = self._current_or_none(tenant)
            if version is None:
                if current is None:
                    raise StoreError(f"tenant {tenant} has no current version to pin; name one: {', '.join(self._version_names(tenant))}")
                version = current
            version = self._choose_target(tenant, tenant_dir, version)
            self.backend.write(f"{tenant}/{PINNED_FILE}", (version + "\n").encode("ascii"))
            if version != current:
                self._switch_current(tenant, version)
        return version

    def unpin(self, tenant: str) -> str | None:
        """Let training move the tenant's pointer again (the served version stays until the next publish); the old pin."""
        self._tenant_dir(tenant)
        with self._lock(tenant) if self._tenant_exists(tenant) else contextlib.nullcontext():
            pinned = self._pointer_or_none(tenant, PINNED_FILE)
            self.backend.delete(f"{tenant}/{PINNED_FILE}")
        return pinned

    def prune(self, tenant: str | None = None) -> list[str]:
        """Delete versions beyond the keep_versions newest (never the current or pinned one) and leftovers."""
        removed: list[str] = [] if tenant is not None else self._remove_deleted_tenants()
        for name in [tenant] if tenant is not None else self.tenants():
            tenant_dir = self._tenant_dir(name)
            if not self._tenant_exists(name):
                continue
            with self._lock(name):
                removed += self.backend.remove_leftovers(name)
                removed += self._prune_tenant(name, tenant_dir)
        return removed

    def delete_tenant(self, tenant: str) -> list[str]:
        """Remove a tenant's models and status entry; servers drop it at their next refresh. Returns deleted paths."""
        self._tenant_dir(tenant)
        removed = self._remove_deleted_tenants()
        if self._tenant_exists(tenant):
            with self._lock(tenant):
                removed = [self.backend.where(f"{tenant}/{n}") for n in self._version_names(tenant)]
                gone = self.backend.delete_tenant(tenant)  # local: renamed aside at once, then removed
            removed += gone[-1:]
        status_files.write_status(self.backend, {}, merge=True, forget=(tenant,))
        status_files.touch_state(self.backend)
        return removed

    def _remove_deleted_tenants(self) -> list[str]:
        """Finish deleting tenant folders whose removal was interrupted (renamed to `.del-<tenant>-<random>`)."""
        return list(self.backend.remove_deleted_tenants())

    def write_status(self, statuses: dict[str, dict], *, merge: bool = False) -> None:
        """Save tenants' states atomically, e.g. {"3": {"state": "failed", ...}}; `merge` keeps other tenants'."""
        status_files.write_status(self.backend, statuses, merge=merge)

    # ----------------------------------------------------------------------------------------- helpers
    def _tenant_dir(self, tenant: str) -> Any:
        """The tenant's folder path (for the local backend and messages), after checking the id is safe as a key."""
        if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
            raise StoreError(
                f"invalid tenant id {tenant!r}: expected 1-64 letters, digits, '_' or '-' "
                "(Totara tenant ids are whole numbers such as 0 or 3)"
            )
        return Path(self.root) / tenant if self.backend.is_local else self.backend.where(tenant)

    def _tenant_exists(self, tenant: str) -> bool:
        return tenant in self.backend.children("") or bool(self._version_names(tenant))

    def current_versions(self, tenants: list[str]) -> dict[str, str | None | Exception]:
        """current_version() of many tenants in one go (concurrent reads on an object store): each tenant's version,
        None, or the exception current_version() would raise. Raises when the store itself cannot be reached."""
        for tenant in tenants:
            self._tenant_dir(tenant)  # a safe id: it becomes a key
        raw = self.backend.read_many([f"{t}/{CURRENT_FILE}" for t in tenants])
        out: dict[str, str | None | Exception] = {}
        for tenant in tenants:
            value = raw[f"{tenant}/{CURRENT_FILE}"]
            if isinstance(value, OSError) and not isinstance(value, FileNotFoundError) and not self.backend.is_local:
                raise value
            try:
                out[tenant] = self._read_pointer(tenant, CURRENT_FILE, value)
            except StoreError as exc:
                out[tenant] = exc
        return out

    def _read_pointer(self, tenant: str, file_name: str, read: bytes | Exception | None = None) -> str | None:
        """The version a pointer file names (`read`: its bytes, or the error reading it, when already fetched)."""
        self._tenant_dir(tenant)
        key = f"{tenant}/{file_name}"
        path = Path(self.backend.where(key)) if self.backend.is_local else self.backend.where(key)
        try:
            if isinstance(read, Exception):
                raise read
            name = (self.backend.read(key) if read is None else read).decode("utf-8").strip()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise BadPointerError(tenant, path, f"holds bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}): "
                                  "not a version id like 20261123T081500.000000Z-1a2b3c") from exc
        except OSError as exc:
            if not self.backend.is_local:
                raise  # the object store is unreachable: says nothing about the pointer, and passes
            raise BadPointerError(tenant, path, f"cannot be read: {exc.strerror or exc}") from exc
        if not VERSION_RE.fullmatch(name):
            raise BadPointerError(tenant, path, f"holds {name[:80]!r}, which is not a version id like 20261123T081500.000000Z-1a2b3c")
        return name

    def _pointer_or_none(self, tenant: str, file_name: str) -> str | None:
        try:
            return self._read_pointer(tenant, file_name)
        except StoreError as exc:
            log.warning("%s", exc)
            return None

    def _pin_of_publish(self, tenant: str, tenant_dir: Any) -> str | None:
        """The pin a publish must respect; an unreadable PINNED file still holds the pointer where it is."""
        try:
            return self._read_pointer(tenant, PINNED_FILE)
        except StoreError as exc:
            log.error("%s; the tenant stays on its current version until the file is fixed or `models unpin %s`", exc, tenant)
            return f"an unreadable {self.backend.where(f'{tenant}/{PINNED_FILE}')}"

    def _current_or_none(self, tenant: str) -> str | None:
        return self._pointer_or_none(tenant, CURRENT_FILE)

    def _version_names(self, tenant: str | Path) -> list[str]:
        """Complete versions, newest first (temporary and half-deleted folders start with a dot)."""
        name = Path(tenant).name
        return sorted((n for n in self.backend.version_names(name) if VERSION_RE.fullmatch(n)), reverse=True)

    def _choose_target(self, tenant: str, tenant_dir: Any, version: str | None) -> str:
        """The verified version to point at: `version`, or (None) the newest good one older than the current."""
        names = self._version_names(tenant)
        if version is not None:
            check_version_name(version)
            if version not in names:
                raise StoreError(f"tenant {tenant} has no model version {version}; available: {', '.join(names) or 'none'}")
            self._load_version(tenant, version, mmap=True, hashes=True)
            return version
        current = self._current_or_none(tenant)
        if current is None:
            raise StoreError(f"tenant {tenant} has no current version to roll back from; name a version: {', '.join(names)}")
        problems = []
        for name in [n for n in names if n < current]:
            try:
                self._load_version(tenant, name, mmap=True, hashes=True)
            except CorruptVersionError as exc:
                problems.append(f"{name} ({exc.file}: {exc.problem})")
                continue
            return name
        why = f"; corrupt: {', '.join(problems)}" if problems else ""
        raise StoreError(f"tenant {tenant} has no good version older than the current {current}{why}")

    def _switch_current(self, tenant: str, version: str) -> None:
        self.backend.write(f"{tenant}/{CURRENT_FILE}", (version + "\n").encode("ascii"))
        status_files.touch_state(self.backend)

    def _after_switch(self, tenant: str, tenant_dir: Any, *, switched: bool) -> None:
        """Steps after a publish's pointer switch: their failure is logged, never turned into a failed publish."""
        if switched:
            try:
                status_files.touch_state(self.backend)
            except OSError as exc:
                log.error("tenant %s: new version published, but %s could not be renewed (%s): servers pick it up "
                          "at the next change", tenant, self.backend.where(status_files.STATE_FILE), exc)
        try:
            self._prune_tenant(tenant, tenant_dir)
        except Exception as exc:
            log.error("tenant %s: new version published, but pruning old versions failed: %s", tenant, exc)

    def _prune_tenant(self, tenant: str, tenant_dir: Any) -> list[str]:
        keep = {self._current_or_none(tenant), self._pointer_or_none(tenant, PINNED_FILE)}
        removed = []
        for name in self._version_names(tenant)[self.keep_versions:]:
            if name in keep:
                continue
            self.backend.delete_version(tenant, name)
            removed.append(self.backend.where(f"{tenant}/{name}"))
        return removed

    def _lock(self, tenant: str) -> contextlib.AbstractContextManager[None]:
        return self.backend.lock(f"{tenant}/{LOCK_FILE}")
