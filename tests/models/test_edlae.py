"""EDLAE: EASE when dropout and discount are off, beats popularity, survives the store, costs grow with items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml_service.models.base import ITEM_ITEM, FitContext, score_users
from ml_service.models.ease import ease_weights
from ml_service.models.edlae import EDLAEAlgorithm, edlae_weights, fit_cost
from ml_service.models.fields import history_matrix
from ml_service.models.popular import PopularAlgorithm
from ml_service.store import ModelStore
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted


def test_without_dropout_and_discount_it_is_ease() -> None:
    data = make_tenant(n_users=40, n_items=12, seed=3)
    x = history_matrix(data, data.interactions, "binary")
    np.testing.assert_allclose(edlae_weights(x, 5.0, 0.0, 0.0), ease_weights(x, 5.0), atol=1e-5)


def test_dropout_regularises_each_item_by_its_frequency() -> None:
    data = make_tenant(n_users=40, n_items=12, seed=3)
    x = history_matrix(data, data.interactions, "binary").toarray().astype(np.float64)
    gram = x.T @ x
    p = np.linalg.inv(gram + np.diag(5.0 + 1.0 * np.diag(gram)))  # dropout 0.5: p / (1 - p) = 1
    expected = np.eye(12) - p / np.diag(p)[None, :]
    expected *= np.maximum(np.diag(gram), 1.0)[None, :] ** -0.2
    got = edlae_weights(history_matrix(data, data.interactions, "binary"), 5.0, 0.5, 0.2)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_beats_popular_and_round_trips_through_the_store(tmp_path: Path) -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    edlae = EDLAEAlgorithm()
    model = fitted(edlae, data, split.train, edlae.candidates(data)[0], ctx)
    model.validate()
    assert model.kind == ITEM_ITEM
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1
    store = ModelStore(tmp_path)
    store.publish(data.tenant, model)
    loaded = store.load(data.tenant).model
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(score_users(loaded, users), score_users(model, users))
    assert loaded.params == model.params


def test_cost_grows_with_the_catalogue() -> None:
    small_seconds, small_bytes = fit_cost(10_000, 1_000, 500_000)
    large_seconds, large_bytes = fit_cost(10_000, 10_000, 500_000)
    assert large_seconds > 100 * small_seconds / 2 and large_bytes > 50 * small_bytes
