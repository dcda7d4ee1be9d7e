"""The store seam of distributed training: stage a fetched export once, let a worker read one tenant, open the model store.

Today the store is a local folder that every worker process on the machine shares (`ML_MODELS_DIR`), so staging
copies the export into a fresh folder under `<ML_MODELS_DIR>/staging/` and a worker reads the files in place. An object store
(`ML_STORE_URL=s3://…`) plugs in here and only here: `stage_export` uploads the files under the store's staging
prefix, `tenant_files` downloads one tenant's three files into a worker-local temporary folder, `remove_staged`
deletes the prefix, and `open_store` builds the store backend from the settings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_service.config import Settings
from ml_service.data.limits import InputLimits
from ml_service.source.base import EXPORTS, ExportSnapshot, TenantFiles
from ml_service.source.staging import staging_prefix, sweep_stale_staging


@dataclass(frozen=True)
class StagedExport:
    """One run's export as every worker can reach it: where, which tenants, their sizes, what failed to download."""

    location: str  # a folder path today; a URL prefix for an object store
    tenants: tuple[str, ...]
    sizes: dict[str, int] = field(default_factory=dict)  # tenant -> bytes of its three files
    failed: dict[str, str] = field(default_factory=dict)
    limits: InputLimits = InputLimits()


def stage_export(snapshot: ExportSnapshot, settings: Settings, tenants: list[str]) -> StagedExport:
    """Put the wanted tenants' files of `snapshot` into a fresh staging folder of the store, once per run."""
    root = Path(settings.staging_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(root)
    # Named as the HTTP source names its folders, so a killed orchestrator's leftovers are swept the same way.
    target = Path(tempfile.mkdtemp(prefix=staging_prefix(), dir=root))
    sizes: dict[str, int] = {}
    try:
        for tenant in tenants:
            if tenant in snapshot.failed:
                continue
            files = snapshot.files(tenant)
            total = 0
            for name in EXPORTS:
                src = Path(getattr(files, name))
                if not src.exists():  # load_tenant names the missing file when the worker reads it
                    continue
                _link_or_copy(src, target / src.name, link=snapshot.temporary)
                total += src.stat().st_size
            sizes[tenant] = total
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return StagedExport(str(target), tuple(tenants), sizes, dict(snapshot.failed), snapshot.limits)


def tenant_files(staged: StagedExport, tenant: str) -> TenantFiles:
    """On a worker: the tenant's three files, readable here (the shared folder itself for a local store)."""
    root = Path(staged.location)
    return TenantFiles(tenant, root / f"user_interactions_{tenant}.csv", root / f"user_data_{tenant}.csv",
                       root / f"item_data_{tenant}.csv", staged.limits)


def remove_staged(staged: StagedExport) -> None:
    """Delete a run's staging area once every task has ended."""
    shutil.rmtree(staged.location, ignore_errors=True)


def open_store(settings: Settings) -> Any:
    """The model store the run publishes to, built the same way in the orchestrator and in every worker."""
    from ml_service.store import ModelStore

    return ModelStore(settings.recommender_dir, keep_versions=settings.keep_versions)


def for_workers(settings: Settings) -> Settings:
    """The orchestrator's settings with absolute folders, so a worker started elsewhere finds the same store."""
    return settings.with_(models_dir=Path(settings.models_dir).resolve(), logs_dir=Path(settings.logs_dir).resolve())


def _link_or_copy(src: Path, dst: Path, *, link: bool) -> None:
    """A hard link for the run's own download folder (nobody rewrites it); a copy of an operator's export folder."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
