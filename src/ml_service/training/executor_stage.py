"""The store seam of distributed training: stage a fetched export once, let a worker read one tenant, open the model store.

With a local store (a folder every worker process on the machine shares, `ML_MODELS_DIR`) staging copies the export
into a fresh folder under `<ML_MODELS_DIR>/staging/` and a worker reads the files in place. With an object store
(`ML_STORE_URL=s3://…`) staging uploads the files under the store's `.staging/<run>/` prefix (a name no tenant can
have), a worker downloads its tenant's three files into a temporary folder of its own, and the orchestrator deletes
the prefix when the run ends; workers then share nothing with the orchestrator but the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ml_service.config import Settings
from ml_service.data.limits import InputLimits
from ml_service.source.base import EXPORTS, ExportSnapshot, TenantFiles
from ml_service.source.staging import staging_prefix, sweep_stale_staging

log = logging.getLogger("ml_service.training")

STAGING_PREFIX = ".staging"  # in an object store; not a tenant name (store/model_store.TENANT_RE)


@dataclass(frozen=True)
class StagedExport:
    """One run's export as every worker can reach it: where, which tenants, their sizes, what failed to download."""

    location: str  # a folder path (local store), or the s3:// prefix of the staged files (object store)
    tenants: tuple[str, ...]
    sizes: dict[str, int] = field(default_factory=dict)  # tenant -> bytes of its three files
    failed: dict[str, str] = field(default_factory=dict)
    limits: InputLimits = InputLimits()


def stage_export(snapshot: ExportSnapshot, settings: Settings, tenants: list[str]) -> StagedExport:
    """Put the wanted tenants' files of `snapshot` into a fresh staging area of the store, once per run."""
    if _remote(settings):
        return _stage_remote(snapshot, settings, tenants)
    root = Path(settings.staging_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(root)
    # Named as the HTTP source names its folders, so a killed orchestrator's leftovers are swept the same way.
    target = Path(tempfile.mkdtemp(prefix=staging_prefix(), dir=root))
    try:
        sizes = _put_files(snapshot, tenants, lambda src: _link_or_copy(src, target / src.name, link=snapshot.temporary))
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return StagedExport(str(target), tuple(tenants), sizes, dict(snapshot.failed), snapshot.limits)


def tenant_files(staged: StagedExport, tenant: str) -> TenantFiles:
    """The tenant's three files in a local staging folder (read in place by a worker on the same machine)."""
    root = Path(staged.location)
    return TenantFiles(tenant, root / f"user_interactions_{tenant}.csv", root / f"user_data_{tenant}.csv",
                       root / f"item_data_{tenant}.csv", staged.limits)


@contextlib.contextmanager
def local_tenant_files(staged: StagedExport, tenant: str, settings: Settings) -> Iterator[TenantFiles]:
    """On a worker: the tenant's three files readable here while the block runs (downloaded from an object store
    into a temporary folder, removed afterwards; the shared folder itself for a local store)."""
    if not staged.location.startswith("s3://"):
        yield tenant_files(staged, tenant)
        return
    backend = open_store(settings).backend
    prefix = staged.location[len(backend.where("")) + 1:]
    folder = Path(tempfile.mkdtemp(prefix=f"ml-task-{tenant}-"))
    try:
        local = StagedExport(str(folder), staged.tenants, staged.sizes, staged.failed, staged.limits)
        files = tenant_files(local, tenant)
        for name in EXPORTS:
            path = Path(getattr(files, name))
            with contextlib.suppress(FileNotFoundError):  # load_tenant names the missing file
                backend.download(f"{prefix}/{path.name}", path)
        yield files
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_staged(staged: StagedExport, settings: Settings) -> None:
    """Delete a run's staging area once every task has ended."""
    if staged.location.startswith("s3://"):
        backend = open_store(settings).backend
        backend.delete_tree(staged.location[len(backend.where("")) + 1:])
        return
    shutil.rmtree(staged.location, ignore_errors=True)


def open_store(settings: Settings) -> Any:
    """The model store the run publishes to, built the same way in the orchestrator and in every worker."""
    from ml_service.store import ModelStore

    return ModelStore.from_settings(settings)


def for_workers(settings: Settings) -> Settings:
    """The orchestrator's settings with absolute folders, so a worker started elsewhere finds the same store."""
    return settings.with_(models_dir=Path(settings.models_dir).resolve(), logs_dir=Path(settings.logs_dir).resolve())


def _remote(settings: Settings) -> bool:
    return settings.store_url.startswith("s3://")


def _put_files(snapshot: ExportSnapshot, tenants: list[str], put: Callable[[Path], None]) -> dict[str, int]:
    """put() every existing export file of the wanted tenants that downloaded; the bytes of each tenant's files.
    A missing file is left out: load_tenant names it when the worker reads the tenant."""
    sizes: dict[str, int] = {}
    for tenant in tenants:
        if tenant in snapshot.failed:
            continue
        files, total = snapshot.files(tenant), 0
        for name in EXPORTS:
            src = Path(getattr(files, name))
            if src.exists():
                put(src)
                total += src.stat().st_size
        sizes[tenant] = total
    return sizes


def _stage_remote(snapshot: ExportSnapshot, settings: Settings, tenants: list[str]) -> StagedExport:
    """Upload the wanted tenants' files under the object store's `.staging/<run>/` prefix."""
    backend = open_store(settings).backend
    # A run holds the store's run lock (one run at a time, on any host), so any staged export already here was
    # left by a run that was killed before it could delete it.
    for leftover in backend.children(STAGING_PREFIX):
        log.warning("removing %s/%s, the staged export of an interrupted run", STAGING_PREFIX, leftover)
        backend.delete_tree(f"{STAGING_PREFIX}/{leftover}")
    prefix = f"{STAGING_PREFIX}/{staging_prefix()}{uuid.uuid4().hex[:8]}"
    try:
        sizes = _put_files(snapshot, tenants, lambda src: backend.upload(src, f"{prefix}/{src.name}"))
    except BaseException:
        with contextlib.suppress(Exception):
            backend.delete_tree(prefix)
        raise
    return StagedExport(backend.where(prefix), tuple(tenants), sizes, dict(snapshot.failed), snapshot.limits)


def _link_or_copy(src: Path, dst: Path, *, link: bool) -> None:
    """A hard link for the run's own download folder (nobody rewrites it); a copy of an operator's export folder."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
