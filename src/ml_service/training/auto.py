"""`auto`: tune every candidate algorithm within a time budget, keep the best by validation NDCG@10, never below popular."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ml_service.data.tenant import TenantData
from ml_service.models import registry
from ml_service.models.base import FACTORS, Algorithm, TrainedModel
from ml_service.training.blend import BLEND_WEIGHTS, blend, can_blend, inverse_spread
from ml_service.training.metrics import evaluate

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES: tuple[str, ...] = ("hybrid", "partial", "mf", "als", "ease", "edlae", "seq_edlae", "knn", "lda")
METRIC = "ndcg@10"
BASELINE = "popular"
CHEAP_DENSE_FIT_S = 60.0  # EASE/EDLAE whose estimated fit is shorter are tried right after kNN
BLEND_PARTNERS = 3  # blends tried: the best factor model with each of the next three


@dataclass
class AutoResult:
    """The refitted winner and what the search saw: every candidate's score, time and reason for being skipped."""

    model: TrainedModel
    choice: str
    scores: dict[str, float] = field(default_factory=dict)  # name -> validation NDCG@10
    seconds: dict[str, float] = field(default_factory=dict)  # name -> seconds spent tuning it
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it was not tried
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> tuned hyper-parameters


def cost_order(names: Sequence[str], data: TenantData) -> list[str]:
    """Candidates cheapest first, so a short budget still tries the fast ones.

    Rough costs: kNN is one sparse product; EASE and EDLAE one dense inversion (items³, so they move back
    when models/edlae.fit_cost estimates more than CHEAP_DENSE_FIT_S); ALS a few sparse sweeps per iteration; LDA a few dozen variational sweeps; the LightFM modes
    many WARP epochs, with side features (partial) and text (hybrid) costing more.
    """
    from ml_service.models.edlae import fit_cost as dense_fit_cost

    # By the estimated fit, not a fixed item count: on MovieLens-1M (3,123 items, ~10 s) a 3,000-item cut-off
    # put EASE behind LDA, which used up the budget, and the best model there was never tried.
    dense_seconds, _ = dense_fit_cost(data.n_users, data.n_items, len(data.interactions))
    ease_rank = 1.0 if dense_seconds <= CHEAP_DENSE_FIT_S else 3.5
    rank = {
        "popular": 0.0, "knn": 0.5, "ease": ease_rank, "edlae": ease_rank + 0.1,
        "seq_edlae": ease_rank + 0.2, "als": 2.0, "lda": 2.5, "mf": 3.0, "partial": 4.0, "hybrid": 5.0,
    }
    return sorted(dict.fromkeys(names), key=lambda name: (rank.get(name, 6.0), name))


def train_auto(
    data: TenantData,
    *,
    threads: int = 1,
    seed: int = 42,
    budget_s: float = 600.0,
    identity: bool = False,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    algorithms: Mapping[str, Algorithm] | None = None,
    clock: Callable[[], float] = time.monotonic,
    protocol: str = "random",
    on_candidate: Callable[[str, int, int], None] | None = None,
) -> AutoResult:
    """Tune `popular` and then each candidate (cheapest first) until `budget_s` is spent; refit the best on all data.

    Every candidate is validated on the same seeded split (tune's), scored by NDCG@10. A candidate wins only
    when it scores strictly above popular; otherwise popular is served. Then, time permitting, the best factor
    model is blended (training/blend.py) with each of the next BLEND_PARTNERS and each of BLEND_WEIGHTS on the
    same split; the best blend wins when it validates strictly above the best single model, and both models
    are refitted on all data for it (choice "<first>+<second>"). `algorithms` overrides the registry by name
    (tests use it to set limits). The choice, scores, times, skips and the blend's scores go into
    model.info["auto"].
    """
    from ml_service.training.tune import fit_final, tune

    def algorithm(name: str) -> Algorithm:
        if algorithms is not None and name in algorithms:
            return algorithms[name]
        return registry.get(name)

    started = clock()
    deadline = started + budget_s
    result_scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    features: dict[Any, Any] = {}  # feature matrices and content vectors, built once and shared by all candidates
    on_train: dict[str, TrainedModel] = {}  # each candidate's best model fitted on the validation split's train part

    order = [BASELINE] + [name for name in cost_order(candidates, data) if name != BASELINE]
    for position, name in enumerate(order):
        if on_candidate is not None:  # live progress (training/progress.py): which candidate, of how many
            on_candidate(name, position, len(order))
        if name != BASELINE and clock() >= deadline:
            skipped[name] = f"time budget of {budget_s:g} s used up before it could start"
            continue
        try:
            chosen = algorithm(name)
        except KeyError as exc:
            skipped[name] = str(exc.args[0] if exc.args else exc)
            continue
        supports = getattr(chosen, "supports", None)
        if supports is not None:
            ok, reason = supports(data)
            if not ok:
                skipped[name] = reason
                continue
        estimate = getattr(chosen, "cost", None)
        if name != BASELINE and estimate is not None and estimate(data)[0] > deadline - clock():
            skipped[name] = f"one fit is estimated at {estimate(data)[0]:.0f} s, more than the budget left"
            continue
        begun = clock()
        try:
            tuned = tune(
                chosen, data, threads=threads, seed=seed, deadline=deadline, identity=identity, features=features,
                protocol=protocol,
            )
        except Exception as exc:  # one failing algorithm must not cost the tenant its model
            if name == BASELINE:
                raise
            log.warning("auto: %s failed on tenant %s: %s", name, data.tenant, exc, exc_info=True)
            skipped[name] = f"failed: {type(exc).__name__}: {exc}"
            seconds[name] = round(clock() - begun, 3)
            continue
        seconds[name] = round(clock() - begun, 3)
        metrics[name] = dict(tuned.validation_metrics)
        result_scores[name] = float(tuned.validation_metrics.get(METRIC, 0.0))
        params[name] = dict(tuned.params)
        on_train[name] = tuned.model_on_train

    choice = BASELINE
    for name, score in result_scores.items():
        if score > result_scores[choice]:
            choice = name
    begun = clock()
    tried_blend: dict[str, Any] = {}
    if clock() < deadline:
        tried_blend = _best_blend(data, on_train, result_scores, seed, protocol)
        if tried_blend:
            seconds["blend"] = round(clock() - begun, 3)
    if tried_blend and tried_blend["score"] > result_scores[choice]:
        pair = tried_blend["pair"]
        choice = f"{pair[0]}+{pair[1]}"
        result_scores[choice] = tried_blend["score"]
        begun = clock()
        finals = [
            fit_final(algorithm(name), data, params[name], threads, seed, identity=identity, features=features)
            for name in pair
        ]
        model = blend(finals[0], finals[1], tried_blend["weight"], choice)
        model.metrics = tried_blend["metrics"]
        params[choice] = dict(model.params)
    else:
        begun = clock()
        model = fit_final(
            algorithm(choice), data, params[choice], threads, seed,
            identity=identity, validation_metrics=metrics[choice], features=features,
        )
    model.info["auto"] = {
        "choice": choice,
        "metric": METRIC,
        "scores": {name: round(score, 6) for name, score in result_scores.items()},
        "seconds": seconds,
        "skipped": skipped,
        "params": params,
        "budget_s": budget_s,
        "final_fit_s": round(clock() - begun, 3),
        "blend": {key: value for key, value in tried_blend.items() if key != "metrics"},
    }
    return AutoResult(model, choice, result_scores, seconds, skipped, params)


def _best_blend(
    data: TenantData, on_train: Mapping[str, TrainedModel], scores: Mapping[str, float], seed: int, protocol: str
) -> dict[str, Any]:
    """The best validated blend of the best factor model with one of the next BLEND_PARTNERS, or {} if none.

    Only models that beat popular take part. A partner from another family can add more than a near-copy of
    the best model (synthetic-20k latest: hybrid+lda was chosen over hybrid+partial), so several are tried;
    each costs three evaluations.
    """
    from ml_service.training.split import holdout_split
    from ml_service.training.tune import VALIDATION_FRACTION

    floor = scores.get(BASELINE, 0.0)
    ranked = sorted(
        (name for name in on_train if name != BASELINE and scores.get(name, 0.0) > floor), key=lambda n: -scores[n]
    )
    first = next((name for name in ranked if on_train[name].kind == FACTORS), None)
    if first is None:
        return {}
    partners = [name for name in ranked if name != first and can_blend(on_train[first], on_train[name])]
    split = holdout_split(data, VALIDATION_FRACTION, seed=seed, protocol=protocol)  # the split tune() used
    best: dict[str, Any] = {}
    tried: dict[str, float] = {}
    first_inverse = inverse_spread(on_train[first])
    for second in partners[:BLEND_PARTNERS]:
        inverses = (first_inverse, inverse_spread(on_train[second]))
        for weight in BLEND_WEIGHTS:
            candidate = blend(on_train[first], on_train[second], weight, "blend", inverse_spreads=inverses)
            result = evaluate(candidate, data, split)
            tried[f"{first}+{second}@{weight:g}"] = round(float(result[METRIC]), 6)
            if not best or result[METRIC] > best["score"]:
                sizes = {"split": {"train": len(split.train), "validation": len(split.test)}}
                best = {"pair": [first, second], "weight": weight, "score": float(result[METRIC]),
                        "metrics": result | sizes}
    return best | {"scores": tried} if best else {}
