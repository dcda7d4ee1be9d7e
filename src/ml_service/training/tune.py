"""Cheap hyper-parameter search: a few candidates on a seeded train/validation split, epochs by early stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ml_service.models.base import Algorithm, FitContext, TrainedModel, assemble
from ml_service.models.extras import validation_extras
from ml_service.models.parts import ScoringPart
from ml_service.training.context import TrainContext
from ml_service.training.metrics import evaluate, ndcg_at_k
from ml_service.training.split import holdout_split, sample_test_users

VALIDATION_FRACTION = 0.2
OBJECTIVE = "ndcg@10"
# Users whose validation NDCG@10 decides early stopping after each epoch (candidates are compared on all users).
# With 5,000 users the estimate's standard error is about 0.004, well below the epoch-to-epoch differences
# that matter; on synthetic-20k it scores 5,000 of 18,000 validation users.
EARLY_STOPPING_USERS = 5000


@dataclass
class TuneResult:
    """The chosen parameters (epochs included), their validation metrics, and what the search cost."""

    params: dict[str, Any]
    validation_metrics: dict[str, Any]
    fits: int
    seconds: float
    model_on_train: TrainedModel  # the best candidate, fitted on the training part only
    candidates: list[dict[str, Any]] = field(default_factory=list)  # every tried candidate: params + score
    features: dict[Any, Any] = field(default_factory=dict)  # the feature cache, reusable by fit_final
    pairs: list[Any] = field(default_factory=list)  # the best's per-(user, type) NDCG@10 (training/search.py)
    dropped: str = ""  # why its remaining candidates were not tried (tune's `drop_below`), or ""


def tune(
    algorithm: Algorithm, ctx: TrainContext, *, auc: bool = True, drop_below: float | None = None,
    max_candidates: int | None = None,
) -> TuneResult:
    """Try algorithm.candidates(data) in order on a seeded hold-out of ctx.data and keep the best by NDCG@10.

    ctx.deadline is a time.monotonic() value: no new candidate starts after it, but the first always runs (and
    iterative fits also stop early at it). ctx.features is the shared (mode, identity) -> FeatureSet cache.
    ctx.protocol is the validation hold-out: "random" or "latest" (each user's newest positives). Early stopping
    within a fit scores a seeded sample of at most EARLY_STOPPING_USERS validation users; candidates are
    compared on all of them. A candidate is a scoring part; what it needs to be evaluated (seen items, popularity)
    is built once per split here, and nothing that only serving needs is built at all. `auc=False` leaves AUC
    out of the final metrics (a third of the validation time on MovieLens-1M; the quick model's AUC compares
    with nothing). `drop_below`: once a candidate has been scored, the remaining ones are not tried while the
    best score so far is under it (auto: the algorithm cannot win, see DROP_MARGIN in training/auto.py).
    `max_candidates`: only the first so many (anytime's quick personalised model: the first, the algorithm's default).
    """
    started = time.monotonic()
    data, deadline = ctx.data, ctx.deadline
    split = holdout_split(data, VALIDATION_FRACTION, seed=ctx.seed, protocol=ctx.protocol)
    early_stopping = sample_test_users(split, EARLY_STOPPING_USERS, seed=ctx.seed)
    extras = validation_extras(data, split.train)

    def model_of(part: ScoringPart) -> TrainedModel:
        return assemble(data, algorithm.name, part, extras)

    best: tuple[float, TrainedModel] | None = None
    tried: list[dict[str, Any]] = []
    dropped = ""
    candidates = algorithm.candidates(data)[:max_candidates]
    for index, params in enumerate(candidates):
        if index > 0 and deadline is not None and time.monotonic() >= deadline:
            break
        if best is not None and drop_below is not None and best[0] < drop_below:
            dropped = (f"{len(candidates) - index} of {len(candidates)} candidates not tried: the best so far "
                       f"({best[0]:.4f}) is under {drop_below:.4f}")
            break
        fit_ctx = FitContext(
            threads=ctx.threads,
            seed=ctx.seed,
            identity_features=ctx.identity,
            deadline=deadline,
            evaluate=lambda part: ndcg_at_k(model_of(part), data, early_stopping),
            features=ctx.features,
        )
        model = model_of(algorithm.fit(data, split.train, params, fit_ctx))
        score = ndcg_at_k(model, data, split)
        tried.append({"params": dict(model.params) or dict(params), OBJECTIVE: score})
        if best is None or score > best[0]:
            best = (score, model)
    assert best is not None, f"algorithm {algorithm.name!r} offered no candidates"
    model = best[1]
    pairs: list[Any] = []
    metrics = evaluate(model, data, split, auc=auc, pairs_out=pairs) | {"split": {"train": len(split.train), "validation": len(split.test)}}
    return TuneResult(
        params=dict(model.params),
        validation_metrics=metrics,
        fits=len(tried),
        seconds=time.monotonic() - started,
        model_on_train=model,
        candidates=tried,
        features=ctx.features,
        pairs=pairs,
        dropped=dropped,
    )


def fit_final(
    algorithm: Algorithm,
    params: Mapping[str, Any],
    ctx: TrainContext,
    *,
    validation_metrics: Mapping[str, Any] | None = None,
    deadline: float | None = None,
) -> TrainedModel:
    """Refit on all of ctx.data.interactions with `params` (epochs fixed, no early stopping) and record the tuning.

    model.params = the fitted parameters, model.metrics = `validation_metrics` (from tune()). The model carries
    the extras evaluation needs; the pipeline adds what only serving needs (training/prepared.finish_model).
    `deadline` (time.monotonic()) stops an iterative fit early: auto's hard budget (training/budget.py).
    """
    data = ctx.data
    fit_ctx = FitContext(
        threads=ctx.threads, seed=ctx.seed, identity_features=ctx.identity, deadline=deadline, evaluate=None,
        features=ctx.features,
    )
    part = algorithm.fit(data, data.interactions, params, fit_ctx)
    model = assemble(data, algorithm.name, part, validation_extras(data, data.interactions, part))
    model.params = dict(part.params) or dict(params)
    model.metrics = dict(validation_metrics or {})
    return model
