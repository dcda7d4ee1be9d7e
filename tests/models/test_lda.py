"""LDA: beats popularity, is reproducible, and serves users without positives from features or popularity."""

from __future__ import annotations

import dataclasses

import numpy as np

from ml_service.models.base import FACTORS, FitContext
from ml_service.models.lda import LDAAlgorithm
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import cold_user_split, holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted


def test_beats_popular_with_valid_shapes() -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    lda = LDAAlgorithm()
    model = fitted(lda, data, split.train, lda.candidates(data)[0], ctx)
    model.validate()
    assert model.kind == FACTORS and model.params["topics"] == 16
    assert np.allclose(model.user_factors[~model.user_cold].sum(axis=1), 1.0, atol=1e-4)  # topic mixtures
    for name in ("positives", "popularity", "item_warm", "user_cold", "similarity_vectors", "content_vectors"):
        assert getattr(model, name) is not None, name
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1


def test_same_seed_same_model() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=2)
    params = {"topics": 4, "iterations": 5}
    first = fitted(LDAAlgorithm(), data, data.interactions, params, FitContext(seed=7))
    second = fitted(LDAAlgorithm(), data, data.interactions, params, FitContext(seed=7))
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)


def test_items_nobody_took_get_no_score() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=3)
    train = data.interactions.subset(data.interactions.item != 5)
    model = fitted(LDAAlgorithm(), data, train, {"topics": 4, "iterations": 5}, FitContext(seed=1))
    assert not model.item_warm[5] and not model.item_factors[5].any()


def test_users_without_positives_are_projected_from_features() -> None:
    data = make_tenant(seed=4)
    split = cold_user_split(data, 0.2, seed=4)
    model = fitted(LDAAlgorithm(), data, split.train, {"topics": 8, "iterations": 10}, FitContext(seed=4))
    new_users = np.unique(split.test.user)
    assert model.info["projected_cold_users"] > 0
    assert not model.user_cold[new_users].all()  # those with side features got a topic mixture


def test_no_positives_at_all_is_all_cold() -> None:
    data = make_tenant(n_users=30, n_items=20, seed=5)
    negatives = dataclasses.replace(data.interactions, rating=np.zeros(len(data.interactions), np.int8))
    model = fitted(LDAAlgorithm(), data, negatives, {"topics": 4}, FitContext(seed=1))
    model.validate()
    assert model.user_cold.all() and not model.item_factors.any()
