"""Blends of two factor models: the served scores are the scaled sum, and only factor models blend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays
from ml_service.models.base import FACTORS, ITEM_ITEM, TrainedModel, score_users
from ml_service.training.blend import blend, can_blend


def _factor_model(seed: int, name: str, n_users: int = 6, n_items: int = 9, dim: int = 3) -> TrainedModel:
    rng = np.random.default_rng(seed)
    return model_from_arrays(
        algorithm=name,
        user_ids=[f"u{i}" for i in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        item_types=np.zeros(n_items, np.int8),
        kind=FACTORS,
        user_factors=rng.normal(size=(n_users, dim)).astype(np.float32),
        item_factors=(rng.normal(size=(n_items, dim)) * (seed + 1) * 10).astype(np.float32),
        user_biases=rng.normal(size=n_users).astype(np.float32),
        item_biases=rng.normal(size=n_items).astype(np.float32),
        user_cold=np.zeros(n_users, bool),
        popularity=np.arange(n_items, dtype=np.float32),
        params={"seed": seed},
    )


def test_scores_are_the_per_learner_scaled_sum() -> None:
    first, second = _factor_model(0, "a"), _factor_model(1, "b")
    users = np.arange(first.n_users)
    raw1, raw2 = score_users(first, users).astype(np.float64), score_users(second, users).astype(np.float64)
    expected = raw1 / raw1.std(axis=1, keepdims=True) + 0.5 * raw2 / raw2.std(axis=1, keepdims=True)
    blended = blend(first, second, 0.5, "a+b")
    blended.validate()
    assert np.allclose(score_users(blended, users), expected, atol=1e-4)
    assert blended.algorithm == "a+b" and blended.params["weight"] == 0.5 and blended.params["a"] == {"seed": 0}


def test_a_learner_without_spread_gets_nothing_from_that_model() -> None:
    first, second = _factor_model(0, "a"), _factor_model(1, "b")
    second.user_factors[2] = 0.0  # no factors: every item scores the item bias + a constant ...
    second.item_biases[:] = 0.0  # ... and without item biases there is no spread at all
    scores = score_users(blend(first, second, 1.0, "a+b"), np.array([2]))[0]
    raw1 = score_users(first, np.array([2]))[0].astype(np.float64)
    assert np.allclose(scores - scores.mean(), (raw1 - raw1.mean()) / raw1.std(), atol=1e-4)


def test_cold_only_when_cold_in_both() -> None:
    first, second = _factor_model(0, "a"), _factor_model(1, "b")
    first.user_cold[[0, 1]] = True
    second.user_cold[[1, 2]] = True
    assert blend(first, second, 1.0, "a+b").user_cold.tolist() == [False, True, False, False, False, False]


def test_only_factor_models_over_the_same_ids_blend() -> None:
    first = _factor_model(0, "a")
    item_item = model_from_arrays(
        algorithm="knn", user_ids=first.user_ids, item_ids=first.item_ids, item_types=first.item_types,
        kind=ITEM_ITEM, item_item=np.eye(first.n_items, dtype=np.float32),
        history=sp.csr_matrix((first.n_users, first.n_items), dtype=np.float32),
    )
    other_items = _factor_model(1, "b", n_items=8)
    assert not can_blend(first, item_item) and not can_blend(first, other_items)
    with pytest.raises(ValueError, match="factor models"):
        blend(first, item_item, 1.0, "a+knn")
