"""`auto`: tune every candidate algorithm within a time budget, keep the best by validation NDCG@10, never below popular."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ml_service.data.tenant import TenantData
from ml_service.models import registry
from ml_service.models.base import Algorithm, TrainedModel
from ml_service.models.parts import FactorModel
from ml_service.training.blend import BLEND_WEIGHTS, blend, can_blend, inverse_spread
from ml_service.training.context import TrainContext
from ml_service.training.costs import Cost
from ml_service.training.metrics import evaluate

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES: tuple[str, ...] = ("hybrid", "partial", "mf", "als", "ease", "edlae", "seq_edlae", "knn", "lda")
METRIC = "ndcg@10"
BASELINE = "popular"
CHEAP_DENSE_FIT_S = 60.0  # EASE/EDLAE whose estimated fit is shorter are tried right after kNN
# An algorithm whose first candidate validates more than this fraction below the best score so far is not tuned
# further (its first candidate still competes and blends). benchmarks/results/candidate_spread.json: over 8
# tenant/hold-out cases (the sample's 3 tenants, MovieLens-100k; random and latest), 10 % never changed the best
# algorithm, 5 % changed it once and 3 % three times: later candidates can add up to 54 % (ease on ML-100k).
DROP_MARGIN = 0.10
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
    ctx: TrainContext,
    *,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    algorithms: Mapping[str, Algorithm] | None = None,
    on_candidate: Callable[[str, int, int], None] | None = None,
    on_interim: Callable[[TrainedModel], None] | None = None,
    memory_limit_mb: float | None = None,
) -> AutoResult:
    """Tune `popular` and then each candidate (cheapest first) within ctx.budget_s; refit the chosen one on all data.

    Every candidate is validated on the same seeded split (tune's), scored by NDCG@10. A candidate wins only
    when it scores strictly above popular; otherwise popular is served. Among candidates within the validation
    noise of the best, the more deterministic and cheaper one is chosen (training/search.py). Then, time
    permitting, the best factor model is blended (training/blend.py) with each of the next BLEND_PARTNERS and
    each of BLEND_WEIGHTS on the same split; the best blend wins when it validates above the chosen single
    model by more than the noise, and both models are refitted on all data for it (choice "<first>+<second>").
    The budget is a hard limit (training/budget.py): a candidate whose cost model (training/costs.py) says its
    tuning and refit would not fit in what is left, or whose peak memory is over `memory_limit_mb`, is skipped;
    iterative fits stop at the search deadline, which keeps the best candidate's refit inside the budget.
    `on_interim` receives the first candidate that beats popular, refitted on all data, while candidates remain
    (anytime publishing); that refit is reused when it is chosen. `algorithms` overrides the registry by name
    (tests use it to set limits); ctx.clock times the budget (tests pass their own). The choice, scores, times, skips, noise and the blend go into model.info["auto"].
    """
    from ml_service.training.budget import Budget, worth_publishing
    from ml_service.training.costs import estimate as estimate_cost, evaluation_s
    from ml_service.training.search import choose, clearly_better, pairs_array
    from ml_service.training.tune import fit_final, tune

    def algorithm(name: str) -> Algorithm:
        if algorithms is not None and name in algorithms:
            return algorithms[name]
        return registry.get(name)

    data, clock, budget_s, seed = ctx.data, ctx.clock, ctx.budget_s, ctx.seed

    def cost_of(name: str, chosen: Algorithm) -> Cost | None:
        own = getattr(chosen, "tune_cost", None)  # an algorithm may state its own (tests' slow candidates do)
        if own is not None:
            return own(data)
        return estimate_cost(name, data.n_users, data.n_items, len(data.interactions))

    budget = Budget(clock(), budget_s, clock)
    memory_limit = None if memory_limit_mb is None else int(memory_limit_mb * 2**20)
    result_scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    pairs: dict[str, np.ndarray] = {}
    costs: dict[str, dict[str, float]] = {}
    dropped: dict[str, str] = {}  # candidates whose algorithm stopped early: it could not win (DROP_MARGIN)
    on_train: dict[str, TrainedModel] = {}  # each candidate's best model fitted on the validation split's train part
    refitted: dict[str, TrainedModel] = {}  # candidates already refitted on all data (the interim one)
    interim: str | None = None

    order = [BASELINE] + [name for name in cost_order(candidates, data) if name != BASELINE]
    for position, name in enumerate(order):
        if on_candidate is not None:  # live progress (training/progress.py): which candidate, of how many
            on_candidate(name, position, len(order))
        if name != BASELINE and clock() >= budget.search_deadline():
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
        if name != BASELINE and estimate is not None and estimate(data)[0] > budget.search_deadline() - clock():
            skipped[name] = f"one fit is estimated at {estimate(data)[0]:.0f} s, more than the budget left"
            continue
        cost = cost_of(name, chosen)
        if cost is not None:
            costs[name] = {"tune_s": round(cost.tune_s, 2), "fit_s": round(cost.fit_s, 2), "peak_mb": round(cost.peak_bytes / 2**20)}
        refusal = budget.refuse(cost, memory_limit) if name != BASELINE else ""
        if refusal:
            skipped[name] = refusal
            continue
        begun = clock()
        try:
            # ctx.features: matrices and content vectors shared by all candidates; the search deadline moves as
            # the budget learns how fast this machine is (training/budget.py)
            bar = max(result_scores.values(), default=0.0) * (1.0 - DROP_MARGIN)
            tuned = tune(chosen, replace(ctx, deadline=budget.search_deadline()), drop_below=bar if result_scores else None)
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
        if tuned.dropped:
            dropped[name] = tuned.dropped
        on_train[name] = tuned.model_on_train
        pairs[name] = pairs_array(tuned.pairs)
        budget.reserve_final(cost)
        if cost is not None and name != BASELINE:  # popular's fixed overheads say nothing about the others
            budget.observe(cost.tune_s, seconds[name])
        refit_s = cost.fit_s * budget.scale if cost is not None else seconds[name] / max(tuned.fits, 1)
        if on_interim is not None and interim is None and name != BASELINE and worth_publishing(
            result_scores[name], result_scores[BASELINE], remaining_candidates=len(order) - position - 1,
            refit_s=refit_s, time_left_s=budget.left(),
        ):
            interim = name
            begun = clock()
            refitted[name] = fit_final(chosen, params[name], ctx, validation_metrics=metrics[name], deadline=budget.deadline)
            seconds["interim_refit"] = round(clock() - begun, 3)
            on_interim(refitted[name])

    picked = choose(result_scores, pairs, seconds, baseline=BASELINE, seed=seed)
    choice = picked.name
    begun = clock()
    tried_blend: dict[str, Any] = {}
    blend_note: Any = ""
    blend_s = BLEND_PARTNERS * len(BLEND_WEIGHTS) * evaluation_s(data.n_users, data.n_items)
    if budget.allows(blend_s + budget.final_reserve_s):  # its evaluations, and a blend refits two models
        tried_blend = _best_blend(ctx, on_train, result_scores)
        if tried_blend:
            seconds["blend"] = round(clock() - begun, 3)
    else:
        blend_note = "not tried: the time left would not cover its evaluations and refitting two models"
    better = False
    if tried_blend:  # a blend only uses models above popular, so `choice` is one of them
        better, noise = clearly_better(tried_blend["score"], tried_blend.pop("pairs"), result_scores[choice],
                                       pairs[choice], seed=seed)
        blend_note = {"against": choice, "above_noise": better, "standard_error": round(noise, 6)}
    if tried_blend and better:
        pair = tried_blend["pair"]
        choice = f"{pair[0]}+{pair[1]}"
        result_scores[choice] = tried_blend["score"]
        begun = clock()
        finals = [
            refitted.get(name) or fit_final(algorithm(name), params[name], ctx, deadline=budget.deadline)
            for name in pair
        ]
        model = blend(finals[0], finals[1], tried_blend["weight"], choice)
        model.metrics = tried_blend["metrics"]
        params[choice] = dict(model.params)
    else:
        begun = clock()
        model = refitted.get(choice) or fit_final(
            algorithm(choice), params[choice], ctx, validation_metrics=metrics[choice], deadline=budget.deadline,
        )
    model.info["auto"] = {
        "choice": choice,
        "metric": METRIC,
        "order": order,
        "scores": {name: round(score, 6) for name, score in result_scores.items()},
        "seconds": seconds,
        "skipped": skipped,
        "params": params,
        "budget_s": budget_s,
        "final_fit_s": round(clock() - begun, 3),
        "blend": {key: value for key, value in tried_blend.items() if key != "metrics"} | (
            {"decision": blend_note} if blend_note else {}),
        "noise": {"best": picked.best, "tied": picked.tied, "reason": picked.reason},
        "costs": costs | {"scale": round(budget.scale, 3)},
        "interim": interim,
        "dropped_early": dropped,
        "seconds_total": round(clock() - budget.started, 3),
    }
    return AutoResult(model, choice, result_scores, seconds, skipped, params)


def _best_blend(ctx: TrainContext, on_train: Mapping[str, TrainedModel], scores: Mapping[str, float]) -> dict[str, Any]:
    """The best validated blend of the best factor model with one of the next BLEND_PARTNERS, or {} if none.

    Only models that beat popular take part. A partner from another family can add more than a near-copy of
    the best model (synthetic-20k latest: hybrid+lda was chosen over hybrid+partial), so several are tried;
    each costs three evaluations.
    """
    from ml_service.training.search import pairs_array
    from ml_service.training.split import holdout_split
    from ml_service.training.tune import VALIDATION_FRACTION

    floor = scores.get(BASELINE, 0.0)
    ranked = sorted(
        (name for name in on_train if name != BASELINE and scores.get(name, 0.0) > floor), key=lambda n: -scores[n]
    )
    first = next((name for name in ranked if isinstance(on_train[name].scoring, FactorModel)), None)
    if first is None:
        return {}
    partners = [name for name in ranked if name != first and can_blend(on_train[first], on_train[name])]
    data = ctx.data
    split = holdout_split(data, VALIDATION_FRACTION, seed=ctx.seed, protocol=ctx.protocol)  # the split tune() used
    best: dict[str, Any] = {}
    tried: dict[str, float] = {}
    first_inverse = inverse_spread(on_train[first])
    for second in partners[:BLEND_PARTNERS]:
        inverses = (first_inverse, inverse_spread(on_train[second]))
        for weight in BLEND_WEIGHTS:
            candidate = blend(on_train[first], on_train[second], weight, "blend", inverse_spreads=inverses)
            blend_pairs: list[np.ndarray] = []
            result = evaluate(candidate, data, split, pairs_out=blend_pairs)
            tried[f"{first}+{second}@{weight:g}"] = round(float(result[METRIC]), 6)
            if not best or result[METRIC] > best["score"]:
                sizes = {"split": {"train": len(split.train), "validation": len(split.test)}}
                best = {"pair": [first, second], "weight": weight, "score": float(result[METRIC]),
                        "metrics": result | sizes, "pairs": pairs_array(blend_pairs)}
    return best | {"scores": tried} if best else {}
