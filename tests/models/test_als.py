"""ALS: beats popularity, stops early on a plateau, serves users without interactions from their features."""

from __future__ import annotations

import numpy as np

from ml_service.models.als import MAX_ITERATIONS, PATIENCE, ALSAlgorithm
from ml_service.models.base import FACTORS, FitContext, TrainedModel
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import cold_user_split, holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted


def test_beats_popular_with_valid_shapes() -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    als = ALSAlgorithm()
    model = fitted(als, data, split.train, als.candidates(data)[0], ctx)
    model.validate()
    assert model.kind == FACTORS and model.params["epochs"] == 15
    for name in ("positives", "popularity", "item_warm", "user_cold", "similarity_vectors", "content_vectors"):
        assert getattr(model, name) is not None, name
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1


def test_same_seed_same_model() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=2)
    params = {"factors": 8, "regularization": 10.0, "alpha": 5.0, "iterations": 5}
    first = fitted(ALSAlgorithm(), data, data.interactions, params, FitContext(seed=7))
    second = fitted(ALSAlgorithm(), data, data.interactions, params, FitContext(seed=7))
    np.testing.assert_array_equal(first.item_factors, second.item_factors)


def test_early_stopping_keeps_the_best_iteration() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=2)
    seen: list[int] = []

    def evaluate(model: TrainedModel) -> float:
        seen.append(model.params["epochs"])
        return 1.0 if model.params["epochs"] == 2 else 0.5  # best at 2, then a plateau

    ctx = FitContext(seed=2, evaluate=evaluate)
    model = fitted(ALSAlgorithm(), data, data.interactions, {"factors": 8, "regularization": 10.0}, ctx)
    assert seen == list(range(1, 2 + PATIENCE + 1)) and 2 + PATIENCE < MAX_ITERATIONS
    assert model.params["epochs"] == 2 and model.info["validation_by_iteration"][1] == 1.0


def test_users_without_interactions_are_served_from_their_features() -> None:
    data = make_tenant(n_users=300, seed=3)
    split = cold_user_split(data, 0.2, seed=3)  # these users' every interaction is held out
    new_users = np.unique(split.test.user)
    ctx = FitContext(threads=1, seed=3)
    als = ALSAlgorithm()
    model = fitted(als, data, split.train, als.candidates(data)[0], ctx)
    assert model.info["projected_cold_users"] >= new_users.size and not model.user_cold[new_users].any()
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1
