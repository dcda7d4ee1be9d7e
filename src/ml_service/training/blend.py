"""A blend of two factor models: each learner's scores from both, put on one scale, added with a tuned weight."""

from __future__ import annotations

import numpy as np

from ml_service.models.base import TrainedModel, score_users
from ml_service.models.parts import FactorModel

BLEND_WEIGHTS = (0.25, 0.5, 1.0)  # weight of the second model; measured on synthetic-20k: 0.5 best, 2 worse
SCALE_BATCH_USERS = 2048


def can_blend(first: TrainedModel, second: TrainedModel) -> bool:
    """Two factor models over the same users and items."""
    return (
        isinstance(first.scoring, FactorModel) and isinstance(second.scoring, FactorModel)
        and first.user_ids == second.user_ids and first.item_ids == second.item_ids
    )


def blend(
    first: TrainedModel,
    second: TrainedModel,
    weight: float,
    name: str,
    *,
    inverse_spreads: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedModel:
    """score(u, i) = raw1(u, i) / sd1(u) + weight x raw2(u, i) / sd2(u), as one factor model that serves as-is.

    sd(u) is the standard deviation of the learner's scores over all items, so two models whose scores live on
    different scales (WARP margins, topic probabilities) count as set by `weight`. Each model's item biases
    become one extra factor column (the per-learner scale makes them learner-dependent). A learner with no
    spread in one model (a cold learner without factors) gets nothing from it. The extras come from `first`
    (the final blend gets its own from the pipeline); a learner is cold only when cold in both.
    `inverse_spreads` = (inverse_spread(first), inverse_spread(second)) when the caller already has them.
    """
    if not can_blend(first, second):
        raise ValueError("only two factor models over the same users and items can be blended")
    if inverse_spreads is None:
        inverse_spreads = (inverse_spread(first), inverse_spread(second))
    stacked = []
    for part, w, model_inverse in ((first.scoring, 1.0, inverse_spreads[0]), (second.scoring, weight, inverse_spreads[1])):
        assert isinstance(part, FactorModel)
        inverse = model_inverse * w
        user_factors = np.asarray(part.user_factors, np.float32) * inverse[:, None]
        user_biases = np.asarray(part.user_biases, np.float32) * inverse
        stacked.append((np.column_stack([user_factors, inverse]),
                        np.column_stack([part.item_factors, np.asarray(part.item_biases, np.float32)]), user_biases))
    scoring = FactorModel(
        user_factors=np.hstack([stacked[0][0], stacked[1][0]]).astype(np.float32),
        item_factors=np.hstack([stacked[0][1], stacked[1][1]]).astype(np.float32),
        user_biases=(stacked[0][2] + stacked[1][2]).astype(np.float32),
        item_biases=np.zeros(first.n_items, np.float32),
        user_cold=np.asarray(first.scoring.user_cold, bool) & np.asarray(second.scoring.user_cold, bool),
        params={"weight": weight, first.algorithm: dict(first.params), second.algorithm: dict(second.params)},
        info={"blend": [first.algorithm, second.algorithm]},
    )
    return TrainedModel(
        algorithm=name,
        user_ids=list(first.user_ids),
        item_ids=list(first.item_ids),
        item_types=np.asarray(first.item_types),
        scoring=scoring,
        extras=first.extras,
        type_names=first.type_names,
        params=dict(scoring.params),
        info=dict(scoring.info),
    )


def inverse_spread(model: TrainedModel) -> np.ndarray:
    """1 / the standard deviation of each learner's raw scores over all items (0 where there is no spread)."""
    spread = np.zeros(model.n_users, np.float64)
    for start in range(0, model.n_users, SCALE_BATCH_USERS):
        users = np.arange(start, min(start + SCALE_BATCH_USERS, model.n_users))
        spread[users] = score_users(model, users).std(axis=1, dtype=np.float64)
    return np.divide(1.0, spread, out=np.zeros_like(spread), where=spread > 1e-12).astype(np.float32)

