"""Per tenant: load → features → tune → fit → evaluate → publish; and the whole run over a source's tenants."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from ml_service.config import Settings
from ml_service.data.tenant import DataError, TenantData
from ml_service.models import registry
from ml_service.source.base import ExportSnapshot, Source, SourceError, TenantFiles
from ml_service.stage_clock import measuring, stage
from ml_service.store.files import DiskFullError
from ml_service.store.format import BadPointerError, StoreError
from ml_service.training.context import TrainContext
from ml_service.training.prepared import Preloaded, finish_model, fingerprint
from ml_service.training.logs import DOWNLOAD_FAILED_MSG, SummaryRow, append_jsonl, append_summary, summary_timestamp
from ml_service.training.result import SMALL_TENANT_MSG, Reporter, RunResult, TenantResult

__all__ = ["SMALL_TENANT_MSG", "Reporter", "RunResult", "TenantResult", "run_training", "train_tenant"]

log = logging.getLogger("ml_service.training")

def train_tenant(
    data: TenantData, settings: Settings, *, algorithm: str | None = None, reporter: Reporter | None = None,
    previous: dict[str, Any] | None = None,
) -> TenantResult:
    """Fit the model for one tenant's data: a pure function of the data, the settings and `previous` (the last
    `auto` search's record, training/reuse.py). `reporter` also receives the interim model (training/interim.py).

    pipeline → (auto | one algorithm) → tune → models, each handed one TrainContext (data, budget, seed, threads).
    """
    name = algorithm or settings.algorithm
    sizes = {"users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}
    started = time.monotonic()
    ctx = TrainContext.of(data, settings)
    if data.n_users < settings.min_users or data.n_items < settings.min_items:
        from ml_service.training.tune import fit_final

        model = fit_final(registry.get("popular"), {}, ctx)
        msg = SMALL_TENANT_MSG.format(tenant=data.tenant)
        state, used = "fallback", "popular"
    elif name == "auto":
        from ml_service.training.auto import train_auto
        from ml_service.training.interim import INTERIM_EVENT
        from ml_service.training.reuse import train_auto_or_reuse

        result = train_auto_or_reuse(
            ctx, previous, algorithm=registry.get, research_every=settings.auto_research_every,
            change_threshold=settings.auto_reuse_change,
            search=lambda: train_auto(
                ctx,
                memory_limit_mb=settings.train_memory_mb,
                on_candidate=None if reporter is None else (
                    lambda cand, pos, total: reporter("candidate", {"tenant": data.tenant, "candidate": cand, "position": pos, "total": total})
                ),
                on_interim=None if reporter is None else (
                    lambda model: reporter(INTERIM_EVENT, {"tenant": data.tenant, "model": model})
                ),
            ),
        )
        model, msg, state, used = result.model, "success", "trained", f"auto:{result.choice}"
        model.info["search"] = {
            "epochs": [model.params.get("epochs", "")],
            "components": [_components(model.params)],
            "scores": [score for score in result.scores.values()],
        }
    else:
        from ml_service.training.tune import fit_final, tune

        chosen = registry.get(name)
        ctx = ctx.started()
        tuned = tune(chosen, ctx)
        model = fit_final(chosen, tuned.params, ctx, validation_metrics=tuned.validation_metrics)
        model.info["search"] = {
            "epochs": [c["params"].get("epochs", "") for c in tuned.candidates],
            "components": [_components(c["params"]) for c in tuned.candidates],
            "scores": [c.get("ndcg@10", 0.0) for c in tuned.candidates],
        }
        model.info["tuning"] = {"fits": tuned.fits, "seconds": round(tuned.seconds, 3)}
        msg, state, used = "success", "trained", name
    seconds = finish_model(model, ctx, started, stage="final")
    return TenantResult(data.tenant, state, msg, used, model, sizes=sizes, seconds=seconds)


def _components(params: dict[str, Any]) -> Any:
    """The embedding size of a parameter set, whatever the algorithm calls it."""
    for key in ("no_components", "factors", "components"):
        if key in params:
            return params[key]
    return ""


def run_training(
    settings: Settings,
    source: Source,
    store: Any,
    *,
    tenants: list[str] | None = None,
    algorithm: str | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Fetch, then for each tenant load → train → publish; log every tenant; a failing tenant keeps its old model."""
    from ml_service.data.load import load_tenant

    report = reporter or (lambda event, details: None)
    run_started = time.monotonic()
    run_stamp = summary_timestamp()  # every row of a run carries the run's start time (D10: not the process's)
    name = algorithm or settings.algorithm
    report("stage", {"tenant": None, "stage": "fetch"})
    try:
        snapshot = source.fetch()
    except (SourceError, OSError) as exc:  # OSError: e.g. a full disk while staging the download
        log.error("training run failed: %s", exc)
        _log_rows(settings, [SummaryRow(run_stamp, name, "all", DOWNLOAD_FAILED_MSG)])
        download = {"ok": False, "seconds": round(time.monotonic() - run_started, 3), "bytes": 0, "attempts": _attempts(source)}
        _append_record(settings, {"event": "run", "ok": False, "error": str(exc), "at": time.time(), "download": download})
        return RunResult(False, [], error=str(exc), seconds=time.monotonic() - run_started)
    download = {"ok": True, "seconds": round(time.monotonic() - run_started, 3), "bytes": _folder_bytes(snapshot.root),
                "attempts": _attempts(source)}
    done: dict[str, TenantResult] = {}
    try:
        wanted = [t for t in snapshot.tenants if tenants is None or t in tenants]
        report("tenants", {"tenants": wanted})
        held: Preloaded | None = None
        if settings.anytime_publish and name != "popular":
            from ml_service.training.anytime import quick_pass

            # Breadth first: every tenant is served a quick model before any tenant's full search starts.
            held = quick_pass(settings, snapshot, wanted, store, load_tenant, report, run_stamp,
                              full=lambda tenant, preloaded: _train_and_log(
                                  settings, snapshot, tenant, name, store, load_tenant, report, run_stamp, preloaded),
                              done=done)
        for tenant in wanted:
            if tenant in done:  # trained whole in the quick pass (too small for more than popular)
                continue
            preloaded = held if held is not None and held.tenant == tenant else None
            held = None  # at most one tenant's data in memory at a time
            done[tenant] = _train_and_log(settings, snapshot, tenant, name, store, load_tenant, report, run_stamp, preloaded)
    finally:
        snapshot.cleanup()
    results = [done[t] for t in wanted if t in done]
    if tenants is None:  # only a full run sees the whole tenants.csv
        _apply_retention(settings, store, snapshot.tenants)
    _write_status(store, results, merge=tenants is not None)
    seconds = time.monotonic() - run_started
    ok = all(r.state != "failed" for r in results)
    _append_record(
        settings,
        {"event": "run", "ok": ok, "tenants": [r.tenant for r in results], "seconds": round(seconds, 3), "at": time.time(),
         "download": download},
    )
    return RunResult(ok, results, seconds=seconds)


def _train_and_log(
    settings: Settings, snapshot: ExportSnapshot, tenant: str, name: str, store: Any,
    load_tenant: Callable[[TenantFiles], TenantData], report: Reporter, run_stamp: str, preloaded: Preloaded | None,
) -> TenantResult:
    """Train one tenant fully, publish, and write its rows in train_summary.log and training.jsonl."""
    report("tenant-start", {"tenant": tenant})
    with measuring() as stages:  # parse / features / fit / evaluate / publish seconds (stage_clock.py)
        result = _train_one(settings, snapshot, tenant, name, store, load_tenant, report, preloaded, run_stamp)
    result.seconds.update(stages.rounded())
    _log_rows(settings, [result.summary_row(run_stamp)])
    gate = result.model.info.get("gate") if result.model is not None else None
    _append_record(settings, {"event": "tenant", "stage": "final", "at": time.time(), **result.as_record(), "gate": gate})
    report("tenant-done", {"result": result})
    return result


def _train_one(
    settings: Settings, snapshot: ExportSnapshot, tenant: str, name: str, store: Any,
    load_tenant: Callable[[TenantFiles], TenantData], report: Reporter, preloaded: Preloaded | None = None,
    run_stamp: str = "",
) -> TenantResult:
    if tenant in snapshot.failed:
        return TenantResult(tenant, "failed", f"Download failed: {snapshot.failed[tenant]}", name)
    seconds: dict[str, float] = {}
    try:
        report("stage", {"tenant": tenant, "stage": "load"})
        started = time.monotonic()
        if preloaded is not None:
            data, data_fingerprint = preloaded.data, preloaded.fingerprint
            seconds.update(preloaded.seconds)
        else:
            with stage("parse"):
                files = snapshot.files(tenant)
                data = load_tenant(files)
                data_fingerprint = fingerprint(files)
            seconds["load"] = round(time.monotonic() - started, 3)
        report("stage", {"tenant": tenant, "stage": "train"})
        previous, reporter = _search_and_interim(settings, store, data, data_fingerprint, name, report, run_stamp)
        with stage("fit"):  # features and evaluation inside it count for themselves
            result = train_tenant(data, settings, algorithm=name, reporter=reporter, previous=previous)
        assert result.model is not None
        result.model.info["data_fingerprint"] = data_fingerprint
        report("stage", {"tenant": tenant, "stage": "publish"})
        started = time.monotonic()
        with stage("publish"):
            if _may_publish_final(settings, store, tenant, result):
                result.version = store.publish(tenant, result.model)
        seconds["publish"] = round(time.monotonic() - started, 3)
    except DataError as exc:
        return TenantResult(tenant, "failed", f"Invalid export data: {exc}", name, seconds=seconds)
    except DiskFullError as exc:  # an operator's problem, not a bug: the message says it all, no traceback
        log.error("training tenant %s failed: %s", tenant, exc)
        return TenantResult(tenant, "failed", f"Training failed: {exc}", name, seconds=seconds)
    except Exception as exc:  # one tenant's crash must not stop the others; its old model keeps serving
        log.exception("training tenant %s failed", tenant)
        return TenantResult(tenant, "failed", f"Training failed: {type(exc).__name__}: {exc}", name, seconds=seconds)
    result.seconds = {**seconds, **result.seconds}
    return result


def _attempts(source: Source) -> dict[str, int]:
    """An HTTP source's download attempts of this fetch by status or error kind ({} for a folder)."""
    return dict(getattr(source, "attempts", None) or {})


def _search_and_interim(
    settings: Settings, store: Any, data: TenantData, data_fingerprint: str, name: str, report: Reporter, run_stamp: str,
) -> tuple[dict[str, Any] | None, Reporter]:
    """The last `auto` search of the tenant (for reuse) and the reporter that publishes the interim model."""
    if name != "auto":
        return None, report
    from ml_service.training.interim import publishing_reporter
    from ml_service.training.reuse import previous_search

    previous = previous_search(store, data.tenant, data_fingerprint)
    if not settings.anytime_publish:
        return previous, report
    return previous, publishing_reporter(report, settings, store, data, data_fingerprint, run_stamp)


def _may_publish_final(settings: Settings, store: Any, tenant: str, result: TenantResult) -> bool:
    """The gate of training/gate.py for a trained model (a fallback always publishes); recorded in its info."""
    assert result.model is not None
    if result.state != "trained":
        return True
    from ml_service.training.gate import METRIC, final_may_replace

    score = result.model.metrics.get(METRIC)
    allowed, reason, existing = final_may_replace(
        store, tenant, float(score) if isinstance(score, (int, float)) else None, settings.validation_protocol)
    result.model.info["gate"] = {"published": allowed, "reason": reason, "existing": existing}
    if not allowed:
        log.info("tenant %s: final model not published: %s", tenant, reason)
    return allowed


def _folder_bytes(root: Path) -> int:
    """Bytes of the export files a fetch produced (the download size for an HTTP source)."""
    try:
        return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    except OSError:
        return 0


def _append_record(settings: Settings, record: dict[str, Any]) -> None:
    """One record of training.jsonl; a failed write (a full disk) is logged and never ends the run."""
    try:
        append_jsonl(settings.training_jsonl, record)
    except OSError as exc:
        log.error("cannot write %s: %s", settings.training_jsonl, exc)


def _log_rows(settings: Settings, rows: list[SummaryRow]) -> None:
    try:
        append_summary(settings.train_summary_log, rows)
    except OSError as exc:  # a full disk must not lose the model that was just published
        log.error("cannot write %s: %s", settings.train_summary_log, exc)


def _apply_retention(settings: Settings, store: Any, present: list[str]) -> None:
    """Delete the tenants absent from tenants.csv for ML_TENANT_RETENTION_RUNS runs; never fails the run."""
    from ml_service.store.retention import apply_retention

    try:
        deleted = apply_retention(store, present, runs=settings.tenant_retention_runs, staging_root=settings.staging_dir)
    except DiskFullError as exc:
        log.error("cannot count the tenants that left tenants.csv: %s; trying again at the next run", exc)
        return
    except Exception:
        log.exception("deleting the tenants that left tenants.csv failed; trying again at the next run")
        return
    for tenant, paths in deleted.items():
        _append_record(settings, {"event": "tenant-deleted", "tenant": tenant, "deleted": paths, "at": time.time()})


def _write_status(store: Any, results: list[TenantResult], *, merge: bool = False) -> None:
    """Record each tenant's state (`merge`: keep other tenants'); a failed tenant with a model keeps serving it."""
    status: dict[str, dict[str, Any]] = {}
    for r in results:
        entry: dict[str, Any] = {"state": r.state, "msg": r.msg, "algorithm": r.algorithm, "at": time.time()}
        if r.state == "failed" and _current_or_none(store, r.tenant):
            entry.update(state="serving-previous", last_error=r.msg)
        pinned = _pinned_or_none(store, r.tenant) if r.version else None
        if pinned is not None and pinned != r.version:
            entry["pinned"] = pinned  # trained and stored, but the operator keeps serving the pinned version
        status[r.tenant] = entry
    try:
        store.write_status(status, merge=merge)
    except (OSError, StoreError) as exc:  # e.g. a full disk: what was published serves all the same
        log.error("cannot record the training status of tenants %s in the store: %s", ", ".join(status) or "(none)", exc)


def _current_or_none(store: Any, tenant: str) -> str | None:
    """The tenant's current version; None (with a warning) when its CURRENT file is unreadable or garbage."""
    try:
        return store.current_version(tenant)
    except BadPointerError as exc:
        log.warning("tenant %s: %s; servers fall back to its newest model version that loads", tenant, exc)
        return None


def _pinned_or_none(store: Any, tenant: str) -> str | None:
    try:
        return store.pinned_version(tenant)
    except Exception as exc:  # an unreadable PINNED file: the store logs it again wherever it matters
        log.warning("tenant %s: %s", tenant, exc)
        return None
