"""A blend of two factor models: each learner's scores from both, put on one scale, added with a tuned weight."""

from __future__ import annotations

import numpy as np

from ml_service.models.base import FACTORS, TrainedModel, score_users

BLEND_WEIGHTS = (0.25, 0.5, 1.0)  # weight of the second model; measured on synthetic-20k: 0.5 best, 2 worse
SCALE_BATCH_USERS = 2048


def can_blend(first: TrainedModel, second: TrainedModel) -> bool:
    """Two factor models over the same users and items."""
    return (
        first.kind == FACTORS and second.kind == FACTORS
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
    spread in one model (a cold learner without factors) gets nothing from it. Serving fields (positives,
    popularity, similarity and content vectors) come from `first`; a learner is cold only when cold in both.
    `inverse_spreads` = (inverse_spread(first), inverse_spread(second)) when the caller already has them.
    """
    if not can_blend(first, second):
        raise ValueError("only two factor models over the same users and items can be blended")
    if inverse_spreads is None:
        inverse_spreads = (inverse_spread(first), inverse_spread(second))
    parts = []
    for model, w, model_inverse in ((first, 1.0, inverse_spreads[0]), (second, weight, inverse_spreads[1])):
        inverse = model_inverse * w
        user_factors = np.asarray(model.user_factors, np.float32) * inverse[:, None]
        item_biases = _zeros_if_none(model.item_biases, model.n_items)
        user_biases = _zeros_if_none(model.user_biases, model.n_users) * inverse
        parts.append((np.column_stack([user_factors, inverse]), np.column_stack([model.item_factors, item_biases]),
                      user_biases))
    cold = None
    if first.user_cold is not None and second.user_cold is not None:
        cold = np.asarray(first.user_cold, bool) & np.asarray(second.user_cold, bool)
    return TrainedModel(
        algorithm=name,
        user_ids=list(first.user_ids),
        item_ids=list(first.item_ids),
        item_types=np.asarray(first.item_types),
        type_names=first.type_names,
        kind=FACTORS,
        user_factors=np.hstack([parts[0][0], parts[1][0]]).astype(np.float32),
        item_factors=np.hstack([parts[0][1], parts[1][1]]).astype(np.float32),
        user_biases=(parts[0][2] + parts[1][2]).astype(np.float32),
        item_biases=np.zeros(first.n_items, np.float32),
        positives=first.positives,
        user_cold=cold,
        popularity=first.popularity,
        similarity_vectors=first.similarity_vectors,
        content_vectors=first.content_vectors,
        item_warm=first.item_warm,
        params={"weight": weight, first.algorithm: dict(first.params), second.algorithm: dict(second.params)},
        info={"blend": [first.algorithm, second.algorithm]},
    )


def inverse_spread(model: TrainedModel) -> np.ndarray:
    """1 / the standard deviation of each learner's raw scores over all items (0 where there is no spread)."""
    spread = np.zeros(model.n_users, np.float64)
    for start in range(0, model.n_users, SCALE_BATCH_USERS):
        users = np.arange(start, min(start + SCALE_BATCH_USERS, model.n_users))
        spread[users] = score_users(model, users).std(axis=1, dtype=np.float64)
    return np.divide(1.0, spread, out=np.zeros_like(spread), where=spread > 1e-12).astype(np.float32)


def _zeros_if_none(array: np.ndarray | None, size: int) -> np.ndarray:
    return np.zeros(size, np.float32) if array is None else np.asarray(array, np.float32)
