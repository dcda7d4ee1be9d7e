"""ML_TRAIN_EXECUTOR=dask: the orchestrator stages the export once, submits one task per tenant (largest first) to a
Dask cluster, and writes the run's logs, progress and status itself, as the local run does.

Dask does the scheduling, the retries after a lost worker (`distributed.scheduler.allowed-failures`, 3 by default:
a task whose worker dies is re-run elsewhere) and the memory limits (a worker's `--memory-limit`, enforced by its
nanny). Each task declares the resources `threads` and `MEMORY` (MB) its tenant needs (executor_task.task_limits);
a worker started by `ml-service worker` offers its thread count and memory limit as those resources, so a worker
runs one large tenant with all its threads or several small ones side by side, never more than it holds.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

from ml_service.config import Settings
from ml_service.source.base import Source, SourceError
from ml_service.training.anytime import log_quick
from ml_service.training.executor_stage import StagedExport, for_workers, remove_staged, stage_export
from ml_service.training.executor_task import TaskSpec, quick_task, task_limits, train_task
from ml_service.training.logs import DOWNLOAD_FAILED_MSG, SummaryRow, append_jsonl, append_summary, summary_timestamp

log = logging.getLogger("ml_service.training")

QUICK_PRIORITY = 1_000_000  # every tenant's quick model is scheduled before any full training (anytime publishing)


class DaskExecutor:
    """Runs tenants' tasks on the Dask cluster at ML_DASK_SCHEDULER (or on the client given, e.g. a LocalCluster's)."""

    name = "dask"

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self._own = client is None
        self._client = client

    @property
    def client(self) -> Any:
        """The connection to the scheduler, made at first use (SourceError when it cannot be reached)."""
        if self._client is None:
            from distributed import Client

            try:
                self._client = Client(self.settings.dask_scheduler, timeout=self.settings.dask_timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise SourceError(f"cannot reach the Dask scheduler ML_DASK_SCHEDULER={self.settings.dask_scheduler} "
                                  f"within ML_DASK_TIMEOUT ({self.settings.dask_timeout_s:g} s): {exc}") from exc
        return self._client

    def close(self) -> None:
        if self._own and self._client is not None:
            self._client.close()

    def wait_for_workers(self) -> None:
        """Return once a worker is connected; SourceError after ML_DASK_TIMEOUT seconds without one."""
        try:
            self.client.wait_for_workers(1, timeout=self.settings.dask_timeout_s)
        except (TimeoutError, OSError) as exc:
            raise SourceError(f"no Dask worker joined the scheduler {self.settings.dask_scheduler or ''} within "
                              f"ML_DASK_TIMEOUT ({self.settings.dask_timeout_s:g} s): start one with `ml-service worker`") from exc

    def offered(self) -> dict[str, float]:
        """The largest amount of each resource any connected worker offers (empty when none declares resources)."""
        most: dict[str, float] = {}
        for worker in self.client.scheduler_info(n_workers=-1).get("workers", {}).values():
            for name, amount in (worker.get("resources") or {}).items():
                most[name] = max(most.get(name, 0.0), float(amount))
        return most

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, priority: int,
               resources: dict[str, float] | None = None) -> Any:
        """One task; `retries=0`: a task that raises would raise again (the tenant's own data), while a lost
        worker is re-run by the scheduler's allowed-failures, not by retries."""
        return self.client.submit(fn, *args, key=key, priority=priority, resources=resources, pure=False, retries=0)

    def map_tenants(self, fn: Callable[..., Any], calls: Sequence[tuple[str, int, tuple[Any, ...]]]) -> Iterator[tuple[str, Any]]:
        """fn(*args) for each (tenant, size, args), largest first; yields (tenant, result or the exception) as they end."""
        from distributed import as_completed

        self.wait_for_workers()
        run = uuid.uuid4().hex[:8]
        ordered = sorted(calls, key=lambda call: -call[1])
        futures = {self.submit(fn, *args, key=f"{fn.__name__}-{tenant}-{run}", priority=len(ordered) - rank): tenant
                   for rank, (tenant, _size, args) in enumerate(ordered)}
        for future in as_completed(futures, loop=self.client.loop):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # e.g. KilledWorker: the task's workers died more often than allowed-failures
                yield futures[future], exc

    def train(self, settings: Settings, source: Source, store: Any, *, tenants: list[str] | None = None,
              algorithm: str | None = None, reporter: Callable[[str, dict[str, Any]], None] | None = None) -> Any:
        """A whole training run on the cluster; the same RunResult, logs, status and progress events as run_training."""
        from ml_service.training.pipeline import RunResult

        report = reporter or (lambda event, details: None)
        run_started = time.monotonic()
        run_stamp = summary_timestamp()
        name = algorithm or settings.algorithm
        report("stage", {"tenant": None, "stage": "fetch"})
        try:
            self.wait_for_workers()
        except SourceError as exc:
            return self._failed_run(settings, name, run_stamp, run_started, str(exc), str(exc))
        try:
            snapshot = source.fetch()
            wanted = [t for t in snapshot.tenants if tenants is None or t in tenants]
            try:
                staged = stage_export(snapshot, settings, wanted)
            finally:
                snapshot.cleanup()
        except (SourceError, OSError) as exc:  # OSError: e.g. a full disk while staging
            return self._failed_run(settings, name, run_stamp, run_started, DOWNLOAD_FAILED_MSG, str(exc))
        download = {"ok": True, "seconds": round(time.monotonic() - run_started, 3), "bytes": sum(staged.sizes.values())}
        report("tenants", {"tenants": wanted})
        try:
            done = self._run_tasks(staged, for_workers(settings), wanted, name, report, run_stamp)
        finally:
            remove_staged(staged, settings)
        results = [done[t] for t in wanted if t in done]
        from ml_service.training.pipeline import _apply_retention, _write_status

        if tenants is None:
            _apply_retention(settings, store, snapshot.tenants)
        _write_status(store, results, merge=tenants is not None)
        seconds = time.monotonic() - run_started
        ok = all(r.state != "failed" for r in results)
        _record(settings, {"event": "run", "ok": ok, "tenants": [r.tenant for r in results], "seconds": round(seconds, 3),
                           "at": time.time(), "download": download, "executor": self.name})
        return RunResult(ok, results, seconds=seconds)

    def _failed_run(self, settings: Settings, name: str, run_stamp: str, run_started: float, row: str, error: str) -> Any:
        from ml_service.training.pipeline import RunResult

        log.error("training run failed: %s", error)
        _summary(settings, [SummaryRow(run_stamp, name, "all", row)])
        _record(settings, {"event": "run", "ok": False, "error": error, "at": time.time(), "executor": self.name,
                           "download": {"ok": False, "seconds": round(time.monotonic() - run_started, 3), "bytes": 0}})
        return RunResult(False, [], error=error, seconds=time.monotonic() - run_started)

    def _run_tasks(self, staged: StagedExport, settings: Settings, wanted: list[str], name: str,
                   report: Callable[[str, dict[str, Any]], None], run_stamp: str) -> dict[str, Any]:
        from distributed import as_completed

        from ml_service.training.pipeline import TenantResult

        done: dict[str, Any] = {}
        for tenant in wanted:
            if tenant in staged.failed:
                done[tenant] = TenantResult(tenant, "failed", f"Download failed: {staged.failed[tenant]}", name)
                _log_result(settings, done[tenant], report, run_stamp)
        order = sorted((t for t in wanted if t not in done), key=lambda t: -staged.sizes.get(t, 0))  # largest first
        offered, run = self.offered(), uuid.uuid4().hex[:8]
        annotate = "threads" in offered and "MEMORY" in offered  # else no worker could ever satisfy the annotation
        if not annotate:
            log.info("the Dask workers declare no threads/MEMORY resources: tasks run without per-task limits")
        futures: dict[Any, tuple[str, str]] = {}
        quick = settings.anytime_publish and name != "popular"
        for rank, tenant in enumerate(order):
            threads, memory = task_limits(staged.sizes.get(tenant, 0), settings, offered)
            spec = TaskSpec(tenant, staged, settings.with_(num_threads=threads), name)
            first = None
            if quick:
                first = self.submit(quick_task, spec, key=f"quick-{tenant}-{run}", priority=QUICK_PRIORITY + len(order) - rank,
                                    resources={"threads": 1, "MEMORY": memory} if annotate else None)
                futures[first] = ("quick", tenant)
            full = self.submit(train_task, spec, first, key=f"train-{tenant}-{run}", priority=len(order) - rank,
                               resources={"threads": threads, "MEMORY": memory} if annotate else None)
            futures[full] = ("full", tenant)
        report("stage", {"tenant": None, "stage": "train"})  # tenants train side by side: no single current one
        for future in as_completed(list(futures), loop=self.client.loop):
            kind, tenant = futures.pop(future)
            try:
                value = future.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # its workers died allowed-failures times, the scheduler was lost (cancelled), …
                log.error("the task of tenant %s failed on the cluster: %s: %s", tenant, type(exc).__name__, exc)
                value = TenantResult(tenant, "failed", f"Training failed: {type(exc).__name__}: {exc}", name) if kind == "full" else None
            if kind == "quick":
                if value is not None:
                    log_quick(settings, run_stamp, value)
                    report("quick-done", {"outcome": value})
                continue
            done[tenant] = value
            _log_result(settings, value, report, run_stamp)
        return done


def _log_result(settings: Settings, result: Any, report: Callable[[str, dict[str, Any]], None], run_stamp: str) -> None:
    _summary(settings, [result.summary_row(run_stamp)])
    gate = result.model.info.get("gate") if result.model is not None else None  # training/gate.py, as a local run logs it
    _record(settings, {"event": "tenant", "stage": "final", "at": time.time(), "executor": "dask", **result.as_record(),
                       "gate": gate})
    report("tenant-done", {"result": result})


def _record(settings: Settings, record: dict[str, Any]) -> None:
    try:
        append_jsonl(settings.training_jsonl, record)
    except OSError as exc:  # a full disk must not end the run
        log.error("cannot write %s: %s", settings.training_jsonl, exc)


def _summary(settings: Settings, rows: list[SummaryRow]) -> None:
    try:
        append_summary(settings.train_summary_log, rows)
    except OSError as exc:
        log.error("cannot write %s: %s", settings.train_summary_log, exc)
