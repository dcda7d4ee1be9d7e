"""Tenant retention: a tenant missing from tenants.csv for N consecutive full runs loses its models and staged data.

It holds learners' data, so it must not outlive the tenant. Absences are counted in the store's status.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from ml_service.store import status as status_files
from ml_service.store.model_store import TENANT_RE, ModelStore

log = logging.getLogger("ml_service.store")

_EXPORTS = ("user_interactions", "user_data", "item_data")


def apply_retention(store: ModelStore, present: Iterable[str], *, runs: int, staging_root: Path | None = None) -> dict[str, list[str]]:
    """Count one full run's absences; delete every tenant absent `runs` runs in a row (0 = never). {tenant: paths}."""
    if runs <= 0:
        return {}
    present_set = set(present)
    absent = status_files.read_absent_runs(store.backend)
    known = set(store.tenants()) | set(status_files.read_status(store.backend)) | set(absent)
    counts: dict[str, int] = {}
    deleted: dict[str, list[str]] = {}
    for tenant in sorted(known - present_set):
        if not TENANT_RE.fullmatch(tenant):
            continue
        count = absent.get(tenant, 0) + 1
        if count < runs:
            counts[tenant] = count
            log.warning("tenant %s is not in tenants.csv (%d of %d runs): still served; its models and data are deleted "
                        "after %d run(s) in a row without it", tenant, count, runs, runs)
            continue
        paths = store.delete_tenant(tenant) + delete_staged_files(staging_root, tenant)
        deleted[tenant] = paths
        log.warning("tenant %s was not in tenants.csv for %d runs in a row: it is no longer served; deleted %s",
                    tenant, count, ", ".join(paths) or "nothing (no files were left)")
    status_files.write_status(store.backend, {}, merge=True, absent_runs=counts, forget=tuple(deleted))
    return deleted


def delete_staged_files(staging_root: Path | None, tenant: str) -> list[str]:
    """Delete a tenant's export files from every staging folder (left by runs that were killed); return them."""
    if staging_root is None or not Path(staging_root).is_dir():
        return []
    removed = []
    folders = [Path(staging_root)] + [p for p in Path(staging_root).iterdir() if p.is_dir()]
    for folder in folders:
        for export in _EXPORTS:
            path = folder / f"{export}_{tenant}.csv"
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("cannot delete %s of the removed tenant %s: %s", path, tenant, exc)
                continue
            removed.append(str(path))
    return removed
