"""ModelStore: tenants' versions under `<root>/<tenant>/<version>/`, published atomically, pinned, rolled back, pruned.

Layout: `<tenant>/CURRENT` names the served version; `<tenant>/PINNED` (optional) holds a version the operator
pinned: publishing still stores new versions but does not move CURRENT. Writers of one tenant are serialised
with an flock on `<tenant>/.lock` where the platform has fcntl; readers never lock: all they can see is complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_service.models.base import TrainedModel
from ml_service.store import status as status_files
from ml_service.store.files import atomic_write, disk_full_reported, exclusive_lock, fsync_dir
from ml_service.store.format import (
    VERSION_RE,
    BadPointerError,
    CorruptVersionError,
    LoadedModel,
    StoreError,
    check_files,
    check_publishable,
    check_version_name,
    created_from_id,
    folder_size,
    load_version,
    new_version_id,
    read_meta,
    write_version,
)

log = logging.getLogger("ml_service.store")

CURRENT_FILE = "CURRENT"
PINNED_FILE = "PINNED"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"  # a version being written; never visible as a version
DELETE_PREFIX = ".del-"  # a version (or at the root, a tenant) being deleted; never visible
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

    def __init__(self, root: Path, keep_versions: int = 5) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
        self.root = Path(root)
        self.keep_versions = keep_versions

    # ----------------------------------------------------------------------------------------- reading
    def tenants(self) -> list[str]:
        """Tenants with a folder in the store (published or not), sorted numerically where possible."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and TENANT_RE.fullmatch(p.name)]
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
        tenant_dir = self._tenant_dir(tenant)
        current = self._current_or_none(tenant)
        pinned = self._pointer_or_none(tenant, PINNED_FILE)
        infos = []
        for name in self._version_names(tenant_dir):
            folder = tenant_dir / name
            error = ""
            meta: dict[str, Any] = {}
            try:
                meta = read_meta(tenant, name, folder)
                check_files(tenant, name, folder, meta, hashes=False)
            except CorruptVersionError as exc:
                error = f"{exc.file}: {exc.problem}"
            infos.append(
                VersionInfo(
                    version=name,
                    created_at=str(meta.get("created_at") or created_from_id(name)),
                    algorithm=str(meta.get("algorithm", "")),
                    metrics=dict(meta.get("metrics") or {}),
                    size_bytes=folder_size(folder),
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
            if not (tenant_dir / version).is_dir():
                raise StoreError(f"tenant {tenant} has no model version {version} in {tenant_dir}")
            return load_version(tenant, version, tenant_dir / version, mmap=mmap, hashes=verify_hashes)
        names = self._version_names(tenant_dir)
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
            if not (tenant_dir / name).is_dir():
                errors.append(f"{name}: the folder is missing")
                continue
            try:
                loaded = load_version(tenant, name, tenant_dir / name, mmap=mmap, hashes=verify_hashes)
            except CorruptVersionError as exc:
                errors.append(f"{name}: {exc.file}: {exc.problem}")
                continue
            if name != current:
                log.warning("tenant %s: current model version is unusable (%s); serving version %s instead", tenant, errors[0], name)
            return loaded
        raise StoreError(f"tenant {tenant} has no usable model version in {tenant_dir}: " + "; ".join(errors))

    def state_token(self) -> str:
        """Changes whenever a tenant's current pointer changes (one small read): servers poll it to hot-swap."""
        return status_files.state_token(self.root)

    def read_status(self) -> dict[str, dict]:
        """The per-tenant states `write_status` saved last ({} when none or unreadable, with a warning)."""
        return status_files.read_status(self.root)

    # ----------------------------------------------------------------------------------------- writing
    def publish(self, tenant: str, model: TrainedModel) -> str:
        """Store a new version and make it current atomically (unless the tenant is pinned); return its id.

        Refuses inconsistent models, NaN/inf arrays and unknown item types (StoreError naming the array). Once
        CURRENT has switched the publish has succeeded: a later failure (the STATE token, pruning) is logged only.
        """
        check_publishable(model, tenant)
        tenant_dir = self._tenant_dir(tenant)
        tenant_dir.mkdir(parents=True, exist_ok=True)
        with self._lock(tenant_dir):
            _remove_leftovers(tenant_dir)
            version = new_version_id(self._version_names(tenant_dir))
            tmp = tenant_dir / f"{TMP_PREFIX}{version}"
            try:
                with disk_full_reported(tenant_dir):
                    tmp.mkdir()
                    write_version(tmp, tenant, version, model)
                    fsync_dir(tmp)
                    os.rename(tmp, tenant_dir / version)
                    fsync_dir(tenant_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # a half-written version is never left behind
                raise
            pinned = self._pin_of_publish(tenant, tenant_dir)
            if pinned is not None:
                log.info("tenant %s is pinned to %s: version %s is stored but not served", tenant, pinned, version)
                self._after_switch(tenant, tenant_dir, switched=False)
            else:
                atomic_write(tenant_dir / CURRENT_FILE, (version + "\n").encode("ascii"))
                self._after_switch(tenant, tenant_dir, switched=True)
        return version

    def rollback(self, tenant: str, version: str | None = None) -> str:
        """Make `version` current (None: the newest good version older than the current); return it.

        Refused for a pinned tenant: `pin` to another version or `unpin` first (the pin is the operator's choice).
        """
        tenant_dir = self._tenant_dir(tenant)
        if not tenant_dir.is_dir():
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        with self._lock(tenant_dir):
            pinned = self._pointer_or_none(tenant, PINNED_FILE)
            if pinned is not None:
                raise StoreError(
                    f"tenant {tenant} is pinned to version {pinned}: use `ml-service models pin {tenant} VERSION` "
                    f"to serve another version, or `ml-service models unpin {tenant}` first"
                )
            version = self._choose_target(tenant, tenant_dir, version)
            if version != self._current_or_none(tenant):
                self._switch_current(tenant_dir, version)
        return version

    def pin(self, tenant: str, version: str | None = None) -> str:
        """Serve `version` (default: the current one) and keep serving it whatever training publishes; return it."""
        tenant_dir = self._tenant_dir(tenant)
        if not tenant_dir.is_dir():
            raise StoreError(f"no model has been published for tenant {tenant} in {self.root}")
        with self._lock(tenant_dir):
            current = self._current_or_none(tenant)
            if version is None:
                if current is None:
                    raise StoreError(f"tenant {tenant} has no current version to pin; name one: {', '.join(self._version_names(tenant_dir))}")
                version = current
            version = self._choose_target(tenant, tenant_dir, version)
            atomic_write(tenant_dir / PINNED_FILE, (version + "\n").encode("ascii"))
            if version != current:
                self._switch_current(tenant_dir, version)
        return version

    def unpin(self, tenant: str) -> str | None:
        """Let training move the tenant's pointer again (the served version stays until the next publish); the old pin."""
        tenant_dir = self._tenant_dir(tenant)
        with self._lock(tenant_dir) if tenant_dir.is_dir() else contextlib.nullcontext():
            pinned = self._pointer_or_none(tenant, PINNED_FILE)
            (tenant_dir / PINNED_FILE).unlink(missing_ok=True)
        return pinned

    def prune(self, tenant: str | None = None) -> list[str]:
        """Delete versions beyond the keep_versions newest (never the current or pinned one) and leftovers."""
        removed: list[str] = [] if tenant is not None else self._remove_deleted_tenants()
        for name in [tenant] if tenant is not None else self.tenants():
            tenant_dir = self._tenant_dir(name)
            if not tenant_dir.is_dir():
                continue
            with self._lock(tenant_dir):
                removed += _remove_leftovers(tenant_dir)
                removed += self._prune_tenant(name, tenant_dir)
        return removed

    def delete_tenant(self, tenant: str) -> list[str]:
        """Remove a tenant's models and status entry; servers drop it at their next refresh. Returns deleted paths."""
        tenant_dir = self._tenant_dir(tenant)
        removed = self._remove_deleted_tenants()
        if tenant_dir.is_dir():
            with self._lock(tenant_dir):
                removed = [str(tenant_dir / n) for n in self._version_names(tenant_dir)]
                doomed = self.root / f"{DELETE_PREFIX}{tenant}-{secrets.token_hex(3)}"
                os.rename(tenant_dir, doomed)  # invisible at once: tenants() only lists valid tenant names
            fsync_dir(self.root)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(str(tenant_dir))
        status_files.write_status(self.root, {}, merge=True, forget=(tenant,))
        status_files.touch_state(self.root)
        return removed

    def _remove_deleted_tenants(self) -> list[str]:
        """Finish deleting tenant folders whose removal was interrupted (renamed to `.del-<tenant>-<random>`)."""
        removed = []
        for path in self.root.glob(f"{DELETE_PREFIX}*") if self.root.is_dir() else []:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        return removed

    def write_status(self, statuses: dict[str, dict], *, merge: bool = False) -> None:
        """Save tenants' states atomically, e.g. {"3": {"state": "failed", ...}}; `merge` keeps other tenants'."""
        status_files.write_status(self.root, statuses, merge=merge)

    # ----------------------------------------------------------------------------------------- helpers
    def _tenant_dir(self, tenant: str) -> Path:
        if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
            raise StoreError(
                f"invalid tenant id {tenant!r}: expected 1-64 letters, digits, '_' or '-' "
                "(Totara tenant ids are whole numbers such as 0 or 3)"
            )
        return self.root / tenant

    def _read_pointer(self, tenant: str, file_name: str) -> str | None:
        path = self._tenant_dir(tenant) / file_name
        try:
            name = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise BadPointerError(tenant, path, f"holds bytes that are not UTF-8 text ({exc.reason} at byte {exc.start}): "
                                  "not a version id like 20261123T081500.000000Z-1a2b3c") from exc
        except OSError as exc:
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

    def _pin_of_publish(self, tenant: str, tenant_dir: Path) -> str | None:
        """The pin a publish must respect; an unreadable PINNED file still holds the pointer where it is."""
        try:
            return self._read_pointer(tenant, PINNED_FILE)
        except StoreError as exc:
            log.error("%s; the tenant stays on its current version until the file is fixed or `models unpin %s`", exc, tenant)
            return f"an unreadable {tenant_dir / PINNED_FILE}"

    def _current_or_none(self, tenant: str) -> str | None:
        return self._pointer_or_none(tenant, CURRENT_FILE)

    @staticmethod
    def _version_names(tenant_dir: Path) -> list[str]:
        """Complete version folders, newest first (temporary and half-deleted folders start with a dot)."""
        if not tenant_dir.is_dir():
            return []
        return sorted((p.name for p in tenant_dir.iterdir() if VERSION_RE.fullmatch(p.name) and p.is_dir()), reverse=True)

    def _choose_target(self, tenant: str, tenant_dir: Path, version: str | None) -> str:
        """The verified version to point at: `version`, or (None) the newest good one older than the current."""
        names = self._version_names(tenant_dir)
        if version is not None:
            check_version_name(version)
            if version not in names:
                raise StoreError(f"tenant {tenant} has no model version {version}; available: {', '.join(names) or 'none'}")
            load_version(tenant, version, tenant_dir / version, mmap=True, hashes=True)
            return version
        current = self._current_or_none(tenant)
        if current is None:
            raise StoreError(f"tenant {tenant} has no current version to roll back from; name a version: {', '.join(names)}")
        problems = []
        for name in [n for n in names if n < current]:
            try:
                load_version(tenant, name, tenant_dir / name, mmap=True, hashes=True)
            except CorruptVersionError as exc:
                problems.append(f"{name} ({exc.file}: {exc.problem})")
                continue
            return name
        why = f"; corrupt: {', '.join(problems)}" if problems else ""
        raise StoreError(f"tenant {tenant} has no good version older than the current {current}{why}")

    def _switch_current(self, tenant_dir: Path, version: str) -> None:
        atomic_write(tenant_dir / CURRENT_FILE, (version + "\n").encode("ascii"))
        status_files.touch_state(self.root)

    def _after_switch(self, tenant: str, tenant_dir: Path, *, switched: bool) -> None:
        """Steps after a publish's pointer switch: their failure is logged, never turned into a failed publish."""
        if switched:
            try:
                status_files.touch_state(self.root)
            except OSError as exc:
                log.error("tenant %s: new version published, but %s could not be renewed (%s): servers pick it up "
                          "at the next change", tenant, self.root / status_files.STATE_FILE, exc)
        try:
            self._prune_tenant(tenant, tenant_dir)
        except Exception as exc:
            log.error("tenant %s: new version published, but pruning old versions failed: %s", tenant, exc)

    def _prune_tenant(self, tenant: str, tenant_dir: Path) -> list[str]:
        keep = {self._current_or_none(tenant), self._pointer_or_none(tenant, PINNED_FILE)}
        removed = []
        for name in self._version_names(tenant_dir)[self.keep_versions:]:
            if name in keep:
                continue
            doomed = tenant_dir / f"{DELETE_PREFIX}{name}"
            os.rename(tenant_dir / name, doomed)  # invisible at once; deleting the files may take a while
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(str(tenant_dir / name))
        if removed:
            fsync_dir(tenant_dir)
        return removed

    @staticmethod
    def _lock(tenant_dir: Path) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(tenant_dir / LOCK_FILE)


def _remove_leftovers(tenant_dir: Path) -> list[str]:
    """Delete folders of publishes or prunes that died midway (only called with the tenant's lock held)."""
    removed = []
    for path in tenant_dir.iterdir():
        if path.is_dir() and path.name.startswith((TMP_PREFIX, DELETE_PREFIX)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
        elif path.is_file() and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    return removed
