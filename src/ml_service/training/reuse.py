"""Scheduled retraining reuses what `auto` learnt: refit the last full search's choice while the data changed little.

A full search records, in the model's meta (info["auto"]["search"]), the tenant's sizes and the validation score
of its choice. A later run whose data differs by at most ML_AUTO_REUSE_CHANGE (the largest relative change
of interactions, users or items) refits that choice with its parameters on the same hold-out protocol and
validates it; it searches again when ML_AUTO_RESEARCH_EVERY runs have passed since the last search, when the
data changed more, or when the refit validates clearly worse (below popular, or below the recorded score by
more than max(2 bootstrap standard errors, REUSE_TOLERANCE of it)).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ml_service.models.base import Algorithm, TrainedModel
from ml_service.training.blend import blend, inverse_spread
from ml_service.training.context import TrainContext
from ml_service.training.metrics import evaluate
from ml_service.training.search import pairs_array, paired_noise

log = logging.getLogger(__name__)

METRIC = "ndcg@10"
BASELINE = "popular"
REUSE_TOLERANCE = 0.03  # relative: a refit scoring 3% under the searched score is "clearly worse" on any tenant


@dataclass
class Decision:
    """Reuse the previous choice or search again, and why (recorded in info["auto"]["search"])."""

    reuse: bool
    reason: str
    change: float | None = None
    runs_since_search: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"reuse": self.reuse, "reason": self.reason, "change": self.change,
                "runs_since_search": self.runs_since_search}


def previous_search(store: Any, tenant: str, data_fingerprint: str | None = None) -> dict[str, Any] | None:
    """info["auto"] of the tenant's newest final `auto` version that recorded a search, or None.

    With "metrics" (that version's validation) and "unchanged": whether it was trained on exactly the export
    whose SHA-256 is `data_fingerprint`.
    """
    try:
        versions = store.versions(tenant)
    except Exception:
        return None
    for version in versions:  # newest first
        try:
            meta = store.read_meta(tenant, version.version)
        except Exception:
            continue
        info = meta.get("info") or {}
        auto = info.get("auto") if isinstance(info, dict) else None
        if info.get("stage") == "final" and isinstance(auto, dict) and isinstance(auto.get("search"), dict):
            unchanged = data_fingerprint is not None and info.get("data_fingerprint") == data_fingerprint
            return auto | {"metrics": meta.get("metrics") or {}, "unchanged": unchanged}
    return None


def data_change(before: Mapping[str, Any], sizes: Mapping[str, int]) -> float:
    """The largest relative change of users, items and interactions (1.0 when a size was unknown or zero)."""
    changes = []
    for key in ("users", "items", "interactions"):
        old = before.get(key)
        if not isinstance(old, (int, float)) or old <= 0:
            return 1.0
        changes.append(abs(sizes[key] - old) / old)
    return max(changes)


def decide(previous: Mapping[str, Any] | None, sizes: Mapping[str, int], *, research_every: int, change_threshold: float,
           protocol: str) -> Decision:
    """Whether this run refits the previous choice (see the module docstring)."""
    if previous is None:
        return Decision(False, "no earlier search recorded")
    search = previous["search"]
    runs = int(search.get("runs_since_search", 0)) + 1
    if search.get("protocol") != protocol:
        return Decision(False, "the earlier search used another validation protocol", runs_since_search=runs)
    if runs >= research_every:
        return Decision(False, f"{runs} runs since the last full search (ML_AUTO_RESEARCH_EVERY={research_every})",
                        runs_since_search=runs)
    change = round(data_change(search.get("sizes") or {}, sizes), 6)
    if change > change_threshold:
        return Decision(False, f"the data changed by {change:.1%} since the last full search "
                               f"(more than ML_AUTO_REUSE_CHANGE={change_threshold:g})", change, runs)
    return Decision(True, f"the data changed by {change:.1%} since the last full search: refitting its choice",
                    change, runs)


def refit_previous(
    ctx: TrainContext,
    previous: Mapping[str, Any],
    decision: Decision,
    *,
    algorithm: Callable[[str], Algorithm],
) -> tuple[TrainedModel | None, dict[str, Any]]:
    """(the previous choice refitted on all data, or None when it validates clearly worse; what was measured)."""
    from ml_service.models.base import FitContext, assemble
    from ml_service.models.extras import validation_extras
    from ml_service.training.split import holdout_split
    from ml_service.training.tune import VALIDATION_FRACTION

    data, seed = ctx.data, ctx.seed

    choice = str(previous["choice"])
    parts = choice.split("+")
    params = previous.get("params") or {}
    weight = (previous.get("blend") or {}).get("weight")
    if any(part not in params for part in parts) or (len(parts) == 2 and weight is None) or len(parts) > 2:
        return None, {"reason": f"the recorded choice {choice!r} lacks its parameters"}
    if previous.get("unchanged") and previous.get("metrics"):
        # The very export the choice was validated on (same SHA-256): the same split would give the same score.
        return _refit(ctx, previous, decision, parts, weight, dict(previous["metrics"]), algorithm,
                      {"choice": choice, "validation": "skipped: the export is unchanged"})
    split = holdout_split(data, VALIDATION_FRACTION, seed=seed, protocol=ctx.protocol)
    fit_ctx = FitContext(threads=ctx.threads, seed=seed, identity_features=ctx.identity, features=ctx.features)

    def on_split(name: str) -> TrainedModel:
        part = algorithm(name).fit(data, split.train, params.get(name, {}), fit_ctx)
        return assemble(data, name, part, validation_extras(data, split.train, part))

    on_train = {name: on_split(name) for name in [BASELINE, *parts]}
    if len(parts) == 2:
        inverses = (inverse_spread(on_train[parts[0]]), inverse_spread(on_train[parts[1]]))
        candidate = blend(on_train[parts[0]], on_train[parts[1]], float(weight), "blend", inverse_spreads=inverses)
    else:
        candidate = on_train[choice]
    pairs: list[np.ndarray] = []
    popular_pairs: list[np.ndarray] = []
    metrics = evaluate(candidate, data, split, pairs_out=pairs)
    popular_score = float(evaluate(on_train[BASELINE], data, split, auc=False, pairs_out=popular_pairs)[METRIC])
    score = float(metrics[METRIC])
    searched = float(previous.get("scores", {}).get(choice, previous["search"].get("score", 0.0)))
    values = pairs_array(pairs)
    noise = paired_noise(values, np.zeros_like(values), seed=seed)
    tolerance = max(2 * noise, REUSE_TOLERANCE * searched)
    measured = {"choice": choice, METRIC: round(score, 6), "searched_" + METRIC: round(searched, 6),
                "popular_" + METRIC: round(popular_score, 6), "tolerance": round(tolerance, 6)}
    if choice != BASELINE and score <= popular_score:
        return None, measured | {"reason": f"the refit of {choice} no longer validates above popular"}
    if searched - score > tolerance:
        return None, measured | {"reason": f"the refit of {choice} validates clearly worse ({score:.4f} < "
                                           f"{searched:.4f} - {tolerance:.4f})"}
    metrics = metrics | {"split": {"train": len(split.train), "validation": len(split.test)}}
    return _refit(ctx, previous, decision, parts, weight, metrics, algorithm, measured)


def _refit(
    ctx: TrainContext, previous: Mapping[str, Any], decision: Decision, parts: list[str], weight: Any,
    metrics: dict[str, Any], algorithm: Callable[[str], Algorithm], measured: dict[str, Any],
) -> tuple[TrainedModel, dict[str, Any]]:
    """The previous choice fitted on all data with its parameters, its meta recording the reuse."""
    from ml_service.training.tune import fit_final

    choice = str(previous["choice"])
    params = previous.get("params") or {}
    finals = [fit_final(algorithm(name), params[name], ctx) for name in parts]
    model = blend(finals[0], finals[1], float(weight), choice) if len(parts) == 2 else finals[0]
    model.params = dict(model.params) or dict(params[choice])
    model.metrics = metrics
    measured.setdefault(METRIC, float(metrics.get(METRIC, 0.0)))
    model.info["auto"] = {
        key: previous[key] for key in ("choice", "metric", "params", "blend", "scores") if key in previous
    } | {"search": dict(previous["search"]) | {"runs_since_search": decision.runs_since_search, "kind": "reuse",
                                                "decision": decision.as_dict(), "refit": measured}}
    return model, measured


def train_auto_or_reuse(
    ctx: TrainContext,
    previous: Mapping[str, Any] | None,
    *,
    search: Callable[[], Any],
    algorithm: Callable[[str], Algorithm],
    research_every: int,
    change_threshold: float,
) -> Any:
    """`search()` (train_auto, an AutoResult) unless decide() says refit the previous choice and it validates."""
    from ml_service.training.auto import AutoResult

    data, protocol = ctx.data, ctx.protocol
    sizes = {"users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}
    decision = decide(previous, sizes, research_every=research_every, change_threshold=change_threshold,
                      protocol=protocol)
    measured: dict[str, Any] = {}
    if decision.reuse and previous is not None:
        try:
            model, measured = refit_previous(ctx, previous, decision, algorithm=algorithm)
        except Exception as exc:  # e.g. an algorithm removed since: search again
            log.warning("refitting the previous choice of tenant %s failed: %s", data.tenant, exc, exc_info=True)
            model, measured = None, {"reason": f"the refit failed: {type(exc).__name__}: {exc}"}
        if model is not None:
            choice = str(previous["choice"])
            return AutoResult(model, choice, {choice: float(measured[METRIC])}, params=dict(previous.get("params") or {}))
        decision = Decision(False, measured["reason"], decision.change, decision.runs_since_search)
    result = search()
    result.model.info.setdefault("auto", {})["search"] = {
        "kind": "full", "runs_since_search": 0, "sizes": sizes, "protocol": protocol,
        "score": result.scores.get(result.choice), "decision": decision.as_dict(), "refit": measured,
    }
    return result
