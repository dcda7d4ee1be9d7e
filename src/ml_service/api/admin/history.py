"""NDCG@10 over a tenant's stored versions for the overview's sparklines: only meta.json, each version read once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from ml_service.store.format import META_FILE, VERSION_RE


class NdcgHistory:
    """Per tenant, the held-out NDCG@10 of every stored version, oldest first.

    The overview needs no integrity check nor folder size (the tenant page shows those): listing the tenant's
    folder and reading each version's meta.json once is enough, as versions never change after they are
    published. The listing is re-read only when the tenant folder's modification time changes (publish,
    rollback, pin and prune all rename or remove entries in it).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._names: dict[str, tuple[int, list[str]]] = {}
        self._values: dict[tuple[str, str], float | None] = {}

    def of(self, tenant: str) -> list[float]:
        folder = self.root / tenant
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return []
        cached = self._names.get(tenant)
        if cached is None or cached[0] != mtime:
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if VERSION_RE.fullmatch(e.name) and e.is_dir())
            except OSError:
                return []
            for key in [k for k in self._values if k[0] == tenant and k[1] not in names]:
                del self._values[key]  # pruned versions
            cached = self._names[tenant] = (mtime, names)
        out = []
        for name in cached[1]:
            key = (tenant, name)
            if key not in self._values:
                self._values[key] = _ndcg(folder / name / META_FILE)
            value = self._values[key]
            if value is not None:
                out.append(value)
        return out


def _ndcg(path: Path) -> float | None:
    try:
        with open(path, "rb") as handle:
            meta = json.loads(handle.read())
        value = (meta.get("metrics") or {}).get("ndcg@10")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class StoreNdcgHistory:
    """The same sparklines from a store that is not a local folder (S3): the store's own version listing, each
    tenant's kept for `ttl_s` (a listing is one or more requests; the overview asks for every tenant)."""

    def __init__(self, store: Any, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.ttl_s, self.clock = store, ttl_s, clock
        self._cached: dict[str, tuple[float, list[float]]] = {}

    def of(self, tenant: str) -> list[float]:
        held = self._cached.get(tenant)
        if held is not None and self.clock() - held[0] < self.ttl_s:
            return held[1]
        try:
            versions = self.store.versions(tenant)  # newest first
        except Exception:
            return held[1] if held is not None else []
        values = [float(v.metrics["ndcg@10"]) for v in reversed(versions)
                  if isinstance(v.metrics.get("ndcg@10"), (int, float)) and not isinstance(v.metrics["ndcg@10"], bool)]
        self._cached[tenant] = (self.clock(), values)
        return values


def ndcg_history(store: Any) -> NdcgHistory | StoreNdcgHistory:
    """The sparkline source for `store`: its folder when local (fast path), else its listing."""
    return NdcgHistory(Path(store.root)) if store.backend.is_local else StoreNdcgHistory(store)
