"""Recency-weighted popularity per item: the cold-start model and the fallback for tenants too small to train."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import FactorModel
from ml_service.models.registry import register

DEFAULT_HALF_LIFE_DAYS = 30.0
SECONDS_PER_DAY = 86400.0


def popularity_scores(
    interactions: Interactions, n_items: int, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> np.ndarray:
    """(n_items,) float32: sum over interactions of (1 + rating) * 0.5 ** (age_days / half_life_days).

    Ages are measured from the newest timestamp in `interactions`, so the score does not drift with the clock.
    An infinite half-life counts every interaction fully. Items without interactions score 0.
    """
    scores = np.zeros(n_items, dtype=np.float64)
    if len(interactions) == 0 or n_items == 0:
        return scores.astype(np.float32)
    weight = 1.0 + interactions.rating.astype(np.float64)
    if np.isfinite(half_life_days):
        age_days = (interactions.timestamp.max() - interactions.timestamp).astype(np.float64) / SECONDS_PER_DAY
        weight *= 0.5 ** (age_days / float(half_life_days))
    np.add.at(scores, interactions.item, weight)
    return scores.astype(np.float32)


def positives_matrix(data: TenantData, train: Interactions) -> sp.csr_matrix:
    """(n_users, n_items) float32 CSR of the rating-1 training interactions: what serving excludes as seen."""
    return data.positive_matrix(train).astype(np.float32)


def warm_items(data: TenantData, train: Interactions) -> np.ndarray:
    """(n_items,) bool: the item has at least one training interaction."""
    warm = np.zeros(data.n_items, dtype=bool)
    warm[train.item] = True
    return warm


class PopularAlgorithm:
    """Most popular items of the requested type, the same list for every user (minus their seen items)."""

    name = "popular"

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [
            {"half_life_days": DEFAULT_HALF_LIFE_DAYS},
            {"half_life_days": 7.0},
            {"half_life_days": float("inf")},
        ]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> FactorModel:
        half_life = float(params.get("half_life_days", DEFAULT_HALF_LIFE_DAYS))
        popularity = popularity_scores(train, data.n_items, half_life)
        # One zero column rather than none: zero-size arrays cannot be memory-mapped by the store.
        # Serving's popularity (models/extras.py) is computed with the same half-life.
        return FactorModel(
            user_factors=np.zeros((data.n_users, 1), dtype=np.float32),
            item_factors=np.zeros((data.n_items, 1), dtype=np.float32),
            user_biases=np.zeros(data.n_users, dtype=np.float32),
            item_biases=popularity,
            user_cold=np.zeros(data.n_users, dtype=bool),
            params={"half_life_days": half_life},
        )


register("popular", PopularAlgorithm)
