"""What one distributed task runs on a worker: read a staged tenant, train it with `train_tenant`, publish, return a summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ml_service.config import Settings
from ml_service.data.tenant import DataError
from ml_service.store.files import DiskFullError
from ml_service.training.executor_stage import StagedExport, local_tenant_files, open_store
from ml_service.training.prepared import fingerprint

log = logging.getLogger("ml_service.training")

BASE_TASK_MB = 256  # an interpreter with numpy/scipy/LightFM imported, before any data


@dataclass(frozen=True)
class TaskSpec:
    """One tenant's task: where its files are, the orchestrator's settings (this task's thread share), the algorithm."""

    tenant: str
    staged: StagedExport
    settings: Settings
    algorithm: str


@dataclass
class ModelFacts:
    """What the orchestrator logs of a published model (parameters, metrics, search), without its arrays."""

    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def task_limits(size_bytes: int, settings: Settings, offered: dict[str, float]) -> tuple[int, int]:
    """(threads, MB) a tenant's task declares: 1 thread below ML_DASK_SMALL_TENANT_MB of export, else ML_NUM_THREADS;
    BASE_TASK_MB + ML_DASK_TASK_MEMORY_FACTOR × its export size; both capped at what the largest worker offers,
    so that no task waits for a worker that cannot exist."""
    size_mb = size_bytes / 2**20
    threads = 1 if size_mb < settings.dask_small_tenant_mb else settings.num_threads
    memory = int(BASE_TASK_MB + settings.dask_task_memory_factor * size_mb)
    if offered.get("threads"):
        threads = max(1, min(threads, int(offered["threads"])))
    if offered.get("MEMORY"):
        memory = max(1, min(memory, int(offered["MEMORY"])))
    return threads, memory


def train_task(spec: TaskSpec, after: Any = None) -> Any:
    """Load, train, publish one tenant; a TenantResult whose `model` is ModelFacts. Never raises for the tenant's own
    problems (its previous model keeps serving); `after` is the tenant's quick task, which must publish first."""
    from ml_service.data.load import load_tenant
    from ml_service.training.pipeline import TenantResult, _may_publish_final, train_tenant
    from ml_service.training.reuse import previous_search

    settings, tenant = spec.settings, spec.tenant
    seconds: dict[str, float] = {}
    try:
        started = time.monotonic()
        with local_tenant_files(spec.staged, tenant, settings) as files:
            data = load_tenant(files)
            data_fingerprint = fingerprint(files)
        seconds["load"] = round(time.monotonic() - started, 3)
        store = open_store(settings)
        # As a local run does: reuse the last search while the data changed little (training/reuse.py), and never
        # let a final model that validates worse replace the one served (training/gate.py). The interim model
        # (training/interim.py) is not published from a task: its log records belong to the orchestrator.
        previous = previous_search(store, tenant, data_fingerprint) if spec.algorithm == "auto" else None
        # The one place distributed training calls train_tenant: same settings, seed and algorithm as a local run.
        result = train_tenant(data, settings, algorithm=spec.algorithm, previous=previous)
        assert result.model is not None
        result.model.info["data_fingerprint"] = data_fingerprint
        started = time.monotonic()
        if _may_publish_final(settings, store, tenant, result):
            result.version = store.publish(tenant, result.model)
        seconds["publish"] = round(time.monotonic() - started, 3)
    except DataError as exc:
        return TenantResult(tenant, "failed", f"Invalid export data: {exc}", spec.algorithm, seconds=seconds)
    except DiskFullError as exc:
        log.error("training tenant %s failed: %s", tenant, exc)
        return TenantResult(tenant, "failed", f"Training failed: {exc}", spec.algorithm, seconds=seconds)
    except Exception as exc:  # one tenant's crash must not stop the others; its old model keeps serving
        log.exception("training tenant %s failed", tenant)
        return TenantResult(tenant, "failed", f"Training failed: {type(exc).__name__}: {exc}", spec.algorithm, seconds=seconds)
    result.seconds = {**seconds, **result.seconds}
    model = result.model
    keep = {k: model.info[k] for k in ("search", "auto", "load_report", "tuning", "gate") if k in model.info}
    result.model = ModelFacts(model.algorithm, dict(model.params), dict(model.metrics), keep)  # type: ignore[assignment]
    return result


def quick_task(spec: TaskSpec) -> Any:
    """Anytime's quick `popular` model for one tenant (QuickOutcome), or None for a tenant too small for more than
    `popular` or whose files do not load: its full task trains or reports it."""
    from ml_service.data.load import load_tenant
    from ml_service.training.anytime import publish_quick
    from ml_service.training.prepared import Preloaded

    settings, tenant = spec.settings, spec.tenant
    try:
        started = time.monotonic()
        with local_tenant_files(spec.staged, tenant, settings) as files:
            data = load_tenant(files)
            data_fingerprint = fingerprint(files)
        seconds = {"load": round(time.monotonic() - started, 3)}
    except Exception as exc:
        log.info("quick pass: tenant %s could not be loaded (%s); the full task reports it", tenant, exc)
        return None
    if data.n_users < settings.min_users or data.n_items < settings.min_items:
        return None
    return publish_quick(settings, open_store(settings), Preloaded(tenant, data, data_fingerprint, seconds))
