"""EASE: closed form against a direct inverse, beats popularity, refuses catalogues above its limit."""

from __future__ import annotations

import numpy as np
import pytest

from ml_service.models.base import ITEM_ITEM, FitContext
from ml_service.models.ease import CatalogueTooLarge, EASEAlgorithm, ease_weights
from ml_service.models.fields import history_matrix
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted


def test_weights_match_the_textbook_formula() -> None:
    data = make_tenant(n_users=40, n_items=12, seed=3)
    x = history_matrix(data, data.interactions, "binary")
    lam = 5.0
    p = np.linalg.inv(x.T.toarray() @ x.toarray() + lam * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(ease_weights(x, lam), expected, atol=1e-5)
    assert np.all(np.diag(ease_weights(x, lam)) == 0)


def test_beats_popular_and_fills_every_serving_field() -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    ease = EASEAlgorithm()
    model = fitted(ease, data, split.train, ease.candidates(data)[0], ctx)
    model.validate()
    assert model.kind == ITEM_ITEM and model.item_item.shape == (data.n_items, data.n_items)
    for name in ("positives", "popularity", "item_warm", "user_cold", "similarity_vectors", "content_vectors"):
        assert getattr(model, name) is not None, name
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1


def test_users_without_history_are_cold() -> None:
    data = make_tenant(n_users=60, n_items=30, cold_users=5, seed=2)
    model = fitted(EASEAlgorithm(), data, data.interactions, {"lambda": 10.0}, FitContext())
    assert model.user_cold[-5:].all() and not model.user_cold[:-5].any()


def test_refuses_a_catalogue_above_its_limit_with_the_numbers() -> None:
    data = make_tenant(n_users=30, n_items=25, seed=0)
    ease = EASEAlgorithm(max_items=20)
    ok, reason = ease.supports(data)
    assert not ok and "25 items" in reason and "limit is 20" in reason
    with pytest.raises(CatalogueTooLarge, match=r"25 items: its limit is 20 items .* GiB"):
        fitted(ease, data, data.interactions, {"lambda": 10.0}, FitContext())
    assert EASEAlgorithm(max_items=25).supports(data) == (True, "")
