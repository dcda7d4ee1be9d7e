"""Tests for the popularity model: recency weighting, per-type ranking, and any data at all (even empty)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.data.tenant import Interactions, Items, TenantData, Users
from ml_service.models import registry
from ml_service.models.base import FitContext
from ml_service.models.popular import PopularAlgorithm, popularity_scores
from ml_service.ranking import rank_user
from tests.synthetic import make_tenant
from tests.models.support import fitted

DAY = 86400


def test_scores_are_recency_weighted_sums() -> None:
    inter = Interactions(
        np.array([0, 1, 2], np.int32),
        np.array([0, 0, 1], np.int32),
        np.array([1, 0, 1], np.int8),
        np.array([100 * DAY, 70 * DAY, 40 * DAY], np.int64),
    )
    scores = popularity_scores(inter, 3, half_life_days=30)
    # item 0: 2 * 1 (newest) + 1 * 0.5 (30 days older); item 1: 2 * 0.25 (60 days older); item 2: none
    assert scores.tolist() == pytest.approx([2.5, 0.5, 0.0])
    assert popularity_scores(inter, 3, half_life_days=float("inf")).tolist() == pytest.approx([3.0, 2.0, 0.0])


def test_ranks_most_popular_of_the_type_and_excludes_seen() -> None:
    data = make_tenant(seed=0)
    model = fitted(PopularAlgorithm(), data, data.interactions, {}, FitContext())
    model.validate()
    popularity = popularity_scores(data.interactions, data.n_items)
    assert model.item_biases is not None and np.array_equal(model.item_biases, popularity)
    user = 0
    seen = set(data.interactions.item[(data.interactions.user == user) & (data.interactions.rating == 1)].tolist())
    for t in np.unique(data.items.type_index):
        of_type = [i for i in np.argsort(-popularity, kind="stable") if data.items.type_index[i] == t]
        expected = [int(i) for i in of_type if i not in seen][:5]
        assert [i for i, _ in rank_user(model, user, int(t), 5)] == expected


@pytest.mark.parametrize("n_users,n_items", [(0, 0), (3, 0), (0, 4), (3, 4)])
def test_works_without_interactions_users_or_items(n_users: int, n_items: int) -> None:
    users = Users([str(u) for u in range(n_users)], *([[""] * n_users] * 3), *([[[]] * n_users] * 5), [{}] * n_users, [""] * n_users)
    items = Items(
        [f"engage_article{j}" for j in range(n_items)], np.full(n_items, 2, np.int8), [],
        sp.csr_matrix((n_items, 0), dtype=np.float32), [""] * n_items,
    )
    data = TenantData("t", users, items, Interactions.empty())
    model = fitted(PopularAlgorithm(), data, data.interactions, {}, FitContext())
    model.validate()
    assert model.popularity is not None and model.popularity.shape == (n_items,)
    if n_users:
        assert len(rank_user(model, 0, 2, 10)) == n_items


def test_registered() -> None:
    assert registry.get("popular").name == "popular"
    assert PopularAlgorithm().candidates(make_tenant(n_users=10, n_items=10))[0] == {"half_life_days": 30.0}
