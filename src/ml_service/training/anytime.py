"""Anytime publishing: every tenant is served a quick model before any tenant's full search starts.

The quick pass loads each tenant's export, validates and fits `popular` on it (seconds) and, when `auto` will
search and the tenant serves no personalised model yet, the default setting of one cheap personalised algorithm
(QUICK_PERSONAL: kNN and ALS, kNN only where its items² fit); it publishes the best of them unless the
tenant already serves a model that validated better, and frees the data. Where those personalised models would
take long (QUICK_POPULAR_FIRST_S) and the tenant serves nothing, `popular` is published first. So every tenant of a site is
personalised before tenant 0's full search starts. The full pass (pipeline.py) then trains each tenant as before
and publishes its final model over the quick one. Memory holds one tenant's data at a time: the last tenant's is
handed to the full pass, which uses it when that tenant trains first (a single tenant: parsed once) and otherwise
frees it; with several tenants each export is parsed twice, a small cost next to training (MovieLens-100k: 0.26 s
of parsing against 67 s of `auto`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ml_service.config import Settings
from ml_service.data.tenant import TenantData
from ml_service.models import registry
from ml_service.models.base import TrainedModel
from ml_service.source.base import ExportSnapshot, TenantFiles
from ml_service.training.context import TrainContext
from ml_service.training.logs import SummaryRow, append_jsonl, append_summary
from ml_service.training.prepared import Preloaded, finish_model, fingerprint

if TYPE_CHECKING:
    from ml_service.training.result import Reporter, TenantResult

log = logging.getLogger("ml_service.training")

QUICK_ALGORITHM = "popular"
QUICK_SUMMARY_PREFIX = "quick:"  # train_summary.log's ALGORITHM for a quick row is this + its algorithm
QUICK_SUMMARY_ALGORITHM = QUICK_SUMMARY_PREFIX + QUICK_ALGORITHM
# The quick personalised models: each of these whose one fit the cost model puts within QUICK_PERSONAL_MAX_FIT_S
# and ML_TRAIN_MEMORY_MB (kNN's dense items² similarity is 2 GB at 10k items; ALS's cost grows only with the
# interactions) is validated with its default setting; the best of them and popular is published. Validation
# NDCG@10 (each learner's newest 20 % held out), popular / knn / als: MovieLens-100k 0.092 / 0.145 / 0.127;
# benchmarks' site-8 tenant 0 (8,000 learners) 0.191 / 0.205 / 0.228, its small tenants (~850 learners) within
# ±0.007 of popular, each of the three best somewhere. Both fit in about a second at these sizes.
QUICK_PERSONAL: tuple[str, ...] = ("knn", "als")
QUICK_PERSONAL_MAX_FIT_S = 20.0
# A tenant that serves nothing yet gets `popular` first when its quick personalised models are estimated to take
# longer than this (two fits each: on the validation split and on all data): MovieLens-1M's knn + als took 33 s,
# during which the tenant had no answer at all. Below it (MovieLens-100k: 3.6 s) one version is stored, not two.
QUICK_POPULAR_FIRST_S = 5.0
METRIC = "ndcg@10"


@dataclass
class QuickOutcome:
    """What the quick pass did for one tenant: published or not, and why."""

    tenant: str
    published: bool
    reason: str
    algorithm: str = QUICK_ALGORITHM
    version: str | None = None
    score: float | None = None
    existing: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    first: "QuickOutcome | None" = None  # `popular`, published before a slow personalised quick model
    at: float = field(default_factory=time.time)  # when it was decided (its record may be written later)

    def as_record(self) -> dict[str, Any]:
        return {"event": "tenant-quick", "stage": "quick", "tenant": self.tenant, "algorithm": self.algorithm,
                "published": self.published, "reason": self.reason, "version": self.version,
                "metrics": {METRIC: self.score} if self.score is not None else {}, "existing": self.existing,
                "seconds": self.seconds, "at": self.at}


def quick_model(data: TenantData, settings: Settings, *, personal: bool = False) -> TrainedModel:
    """`popular` validated on the same hold-out as the full search (so its NDCG@10 compares), refitted on all data;
    with `personal`, each QUICK_PERSONAL algorithm within its limits is validated too (its first candidate) on
    that hold-out, and whichever of them all validates highest is refitted and returned (model.info["quick"] says
    what was tried and why an algorithm was left out).

    Without AUC (a third of its validation time on MovieLens-1M): nothing compares a quick model's AUC.
    """
    from ml_service.training.tune import fit_final, tune

    started = time.monotonic()
    ctx = TrainContext.of(data, settings)  # no deadline: these fits take seconds
    chosen = registry.get(QUICK_ALGORITHM)
    tuned = tune(chosen, ctx, auc=False)
    tried: dict[str, Any] = {QUICK_ALGORITHM: round(float(tuned.validation_metrics.get(METRIC, 0.0)), 6)}
    best = tried[QUICK_ALGORITHM]
    left_out: dict[str, str] = {}
    if personal:
        names, left_out = quick_personal_algorithms(data, settings)
        for name in names:
            algorithm = registry.get(name)
            candidate = tune(algorithm, ctx, auc=False, max_candidates=1)
            tried[name] = round(float(candidate.validation_metrics.get(METRIC, 0.0)), 6)
            if tried[name] > best:
                chosen, tuned, best = algorithm, candidate, tried[name]
    model = fit_final(chosen, tuned.params, ctx, validation_metrics=tuned.validation_metrics)
    model.info["quick"] = {"validation": tried, "chosen": chosen.name} | ({"left_out": left_out} if left_out else {})
    finish_model(model, ctx, started, stage="quick")
    return model


def quick_personal_seconds(data: TenantData, settings: Settings) -> float:
    """Estimated seconds of the quick personalised models on this tenant (cost models: two fits each)."""
    from ml_service.training.costs import estimate

    names, _ = quick_personal_algorithms(data, settings)
    costs = [estimate(name, data.n_users, data.n_items, len(data.interactions)) for name in names]
    return sum(2 * cost.fit_s for cost in costs if cost is not None)


def quick_personal_algorithms(data: TenantData, settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The QUICK_PERSONAL algorithms whose one fit on this tenant is within the limits, and why the others are not."""
    from ml_service.training.costs import estimate

    names: list[str] = []
    left_out: dict[str, str] = {}
    for name in QUICK_PERSONAL:
        try:
            algorithm = registry.get(name)
        except KeyError:
            left_out[name] = "not installed"
            continue
        supports = getattr(algorithm, "supports", None)
        ok, why = supports(data) if supports is not None else (True, "")
        cost = estimate(name, data.n_users, data.n_items, len(data.interactions))
        if not ok:
            left_out[name] = why
        elif cost is not None and cost.peak_bytes > settings.train_memory_mb * 2**20:
            left_out[name] = f"estimated peak {cost.peak_bytes / 2**20:.0f} MB > ML_TRAIN_MEMORY_MB"
        elif cost is not None and cost.fit_s > QUICK_PERSONAL_MAX_FIT_S:
            left_out[name] = f"estimated fit {cost.fit_s:.0f} s > {QUICK_PERSONAL_MAX_FIT_S:g} s"
        else:
            names.append(name)
    return names, left_out


def may_replace(store: Any, tenant: str, score: float, protocol: str) -> tuple[bool, str, dict[str, Any]]:
    """Whether a quick model validating at `score` may replace what the tenant serves: (yes?, why, the existing one).

    Yes when nothing is served, when a `popular` model is (older data), or when the served model's stored
    validation NDCG@10 (same hold-out protocol) is not higher. A pinned tenant is left alone (the store would
    keep its pointer anyway; storing a version nobody serves would only push older versions out).
    """
    try:
        pinned = store.pinned_version(tenant)
    except Exception as exc:  # an unreadable PINNED file still holds the pointer
        return False, f"PINNED cannot be read ({exc})", {}
    if pinned is not None:
        return False, f"pinned to version {pinned}", {"version": pinned}
    current = next((v for v in store.versions(tenant) if v.is_current), None) if store.current_version(tenant) else None
    if current is None:
        return True, "no model served yet", {}
    existing = {"version": current.version, "algorithm": current.algorithm, METRIC: current.metrics.get(METRIC)}
    if not current.ok:
        return True, f"the served version is damaged ({current.error})", existing
    if current.algorithm == QUICK_ALGORITHM:
        return True, "the served model is popular too, from older data", existing
    theirs = current.metrics.get(METRIC)
    if not isinstance(theirs, (int, float)):
        return False, f"the served {current.algorithm} model has no validation {METRIC} to compare", existing
    their_protocol = _protocol_of(store, tenant, current.version)
    if their_protocol is not None and their_protocol != protocol:
        return False, f"the served model was validated with another protocol ({their_protocol})", existing
    if score >= theirs:
        return True, f"validates at least as well ({score:.4f} >= {theirs:.4f})", existing
    return False, f"the served {current.algorithm} model validates better ({theirs:.4f} > {score:.4f})", existing


def _protocol_of(store: Any, tenant: str, version: str) -> str | None:
    """The validation protocol recorded in a version's meta (None for versions written before it was recorded)."""
    try:
        info = store.read_meta(tenant, version).get("info") or {}
    except Exception:
        return None
    protocol = info.get("validation_protocol")
    return protocol if isinstance(protocol, str) else None


def quick_pass(
    settings: Settings,
    snapshot: ExportSnapshot,
    tenants: list[str],
    store: Any,
    load_tenant: Callable[[TenantFiles], TenantData],
    report: "Reporter",
    run_stamp: str,
    *,
    full: Callable[[str, "Preloaded"], "TenantResult"],
    done: dict[str, "TenantResult"],
) -> "Preloaded | None":
    """Publish a quick model for every tenant; returns the last tenant's parsed data for the full pass.

    A tenant too small for more than `popular` is trained whole here (`full`, its result put in `done`). A
    tenant whose download or parsing fails is left to the full pass, which reports it.
    """

    held: Preloaded | None = None
    for tenant in tenants:
        if tenant in snapshot.failed:
            continue
        held = preloaded = None  # free the previous tenant's data before parsing the next
        report("quick", {"tenant": tenant})
        try:
            started = time.monotonic()
            files = snapshot.files(tenant)
            preloaded = Preloaded(tenant, load_tenant(files), fingerprint(files), {"load": round(time.monotonic() - started, 3)})
        except Exception as exc:
            log.info("quick pass: tenant %s could not be loaded (%s); the full pass reports it", tenant, exc)
            continue
        if preloaded.data.n_users < settings.min_users or preloaded.data.n_items < settings.min_items:
            done[tenant] = full(tenant, preloaded)
            continue
        outcome = publish_quick(settings, store, preloaded)
        log_quick(settings, run_stamp, outcome)
        report("quick-done", {"outcome": outcome})
        held = preloaded
    return held


def publish_quick(settings: Settings, store: Any, preloaded: "Preloaded") -> QuickOutcome:
    """Fit the quick model of a parsed tenant and publish it unless the served one validates better (a local run
    and a Dask task alike); never raises: a failure is the outcome's reason. A tenant that serves nothing yet and
    whose quick personalised models would take more than QUICK_POPULAR_FIRST_S is served `popular` first
    (outcome.first)."""
    try:
        current = next((v for v in store.versions(preloaded.tenant) if v.is_current), None)
        serves_nothing = current is None or not current.ok
    except Exception:  # an unreadable store: may_replace will say so; fitting costs only seconds
        current, serves_nothing = None, False
    # A quick personalised model is worth its seconds when `auto` will search and the tenant serves none yet (a
    # fixed algorithm is what the site asked for: popular bridges to it).
    personal = settings.algorithm == "auto" and (current is None or not current.ok or current.algorithm == QUICK_ALGORITHM)
    first = None
    if personal and serves_nothing:
        try:
            slow = quick_personal_seconds(preloaded.data, settings) > QUICK_POPULAR_FIRST_S
        except Exception:  # an estimate is no reason to fail: no popular first
            slow = False
        if slow:
            first = _publish_quick_model(settings, store, preloaded, personal=False)
    outcome = _publish_quick_model(settings, store, preloaded, personal=personal, popular_served=bool(first and first.published))
    outcome.first = first
    return outcome


def _publish_quick_model(
    settings: Settings, store: Any, preloaded: "Preloaded", *, personal: bool, popular_served: bool = False
) -> QuickOutcome:
    tenant = preloaded.tenant
    seconds = dict(preloaded.seconds)
    try:
        started = time.monotonic()
        model = quick_model(preloaded.data, settings, personal=personal)
        model.info["data_fingerprint"] = preloaded.fingerprint
        seconds["train"] = round(time.monotonic() - started, 3)
        score = float(model.metrics.get(METRIC, 0.0))
        if popular_served and model.algorithm == QUICK_ALGORITHM:
            return QuickOutcome(tenant, False, "popular validated best and is served already (published first)",
                                model.algorithm, score=score, seconds=seconds)
        allowed, reason, existing = may_replace(store, tenant, score, settings.validation_protocol)
        if not allowed:
            return QuickOutcome(tenant, False, reason, model.algorithm, score=score, existing=existing, seconds=seconds)
        started = time.monotonic()
        version = store.publish(tenant, model)
        seconds["publish"] = round(time.monotonic() - started, 3)
    except Exception as exc:  # the quick model is a bonus: its failure must not cost the tenant its full training
        log.exception("quick model of tenant %s failed", tenant)
        return QuickOutcome(tenant, False, f"failed: {type(exc).__name__}: {exc}", seconds=seconds)
    return QuickOutcome(tenant, True, reason, model.algorithm, version, score, existing, seconds)


def log_quick(settings: Settings, run_stamp: str, outcome: QuickOutcome) -> None:
    """training.jsonl's record and, when published, train_summary.log's row of a quick outcome (its `first` one
    before it); a full disk must not end the run."""
    for step in (outcome.first, outcome):
        if step is None:
            continue
        try:
            append_jsonl(settings.training_jsonl, step.as_record())
        except OSError as exc:
            log.error("cannot write %s: %s", settings.training_jsonl, exc)
        if step.published:
            _log_quick_row(settings, run_stamp, step)


def _log_quick_row(settings: Settings, run_stamp: str, outcome: QuickOutcome) -> None:
    score = "" if outcome.score is None else f"{outcome.score:.4f}"
    try:
        append_summary(settings.train_summary_log, [SummaryRow(
            run_stamp, QUICK_SUMMARY_PREFIX + outcome.algorithm, outcome.tenant, "success", score=score)])
    except OSError as exc:
        log.error("cannot write %s: %s", settings.train_summary_log, exc)
