"""Tests for the offline evaluation: hand-computed values, and agreement with what /user-items serves."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.data.tenant import TYPE_INDEX, Interactions, Items, TenantData, Users
from ml_service.models.base import FitContext, TrainedModel
from ml_service.models.lightfm_modes import LightFMAlgorithm
from ml_service.ranking import rank_user
from ml_service.training.metrics import evaluate, ndcg_at_k
from ml_service.training.split import Split, holdout_split
from tests.synthetic import make_tenant

ARTICLE, COURSE = TYPE_INDEX["engage_article"], TYPE_INDEX["container_course"]
L2 = 1 / np.log2(3)  # discount of rank 2


def _interactions(rows: list[tuple[int, int, int]]) -> Interactions:
    u, i, r = (np.array(col, dtype=dt) for col, dt in zip(zip(*rows), (np.int32, np.int32, np.int8)))
    return Interactions(u, i, r, np.zeros(len(rows), np.int64))


@pytest.fixture
def tiny() -> tuple[TrainedModel, TenantData, Split]:
    """3 users, 6 items (0-2 articles, 3-5 courses); user 2 is cold and gets popularity."""
    users = Users(["a", "b", "c"], *([[""] * 3] * 3), *([[[]] * 3] * 5), [{}] * 3, [""] * 3)
    types = np.array([ARTICLE] * 3 + [COURSE] * 3, np.int8)
    items = Items([f"i{j}" for j in range(6)], types, [], sp.csr_matrix((6, 0), dtype=np.float32), [""] * 6)
    train = _interactions([(0, 0, 1), (0, 3, 0), (1, 2, 1)])
    test = _interactions([(0, 2, 1), (0, 5, 1), (1, 1, 1), (2, 0, 1), (2, 1, 1), (2, 4, 1)])
    data = TenantData("t", users, items, train)
    model = TrainedModel(
        algorithm="fixed",
        user_ids=users.ids,
        item_ids=items.ids,
        item_types=types,
        user_factors=np.array(
            [[0.9, 0.8, 0.7, 0.1, 0.2, 0.3], [0.1, 0.5, 0.9, 0.6, 0.4, 0.2], [9, 9, 9, 9, 9, 9]], np.float32
        ),
        item_factors=np.eye(6, dtype=np.float32),
        user_cold=np.array([False, False, True]),
        popularity=np.array([3, 1, 2, 0, 5, 4], np.float32),
        positives=data.positive_matrix(train),
    )
    return model, data, Split(train, test)


def test_hand_computed_metrics(tiny: tuple[TrainedModel, TenantData, Split]) -> None:
    model, data, split = tiny
    result = evaluate(model, data, split, k=2)
    # Lists: u0 article [1, 2] (0 seen), u0 course [5, 4] (3 is rating 0: stays), u1 article [1, 0] (2 seen),
    # u2 (cold, popularity) article [0, 2], course [4, 5].
    article_ndcg = (L2 + 1 + 1 / (1 + L2)) / 3
    article = result["per_type"]["engage_article"]
    assert article == pytest.approx(
        {"users": 3, "held_out": 4, "precision@2": 0.5, "recall@2": 2.5 / 3, "ndcg@2": article_ndcg, "hit_rate@2": 1.0}
    )
    course = result["per_type"]["container_course"]
    assert course == pytest.approx(
        {"users": 2, "held_out": 2, "precision@2": 0.5, "recall@2": 1.0, "ndcg@2": 1.0, "hit_rate@2": 1.0}
    )
    assert result["users"] == 3 and result["held_out"] == 6
    assert result["precision@2"] == pytest.approx(0.5)
    assert result["recall@2"] == pytest.approx((4 * 2.5 / 3 + 2) / 6)
    assert result["ndcg@2"] == pytest.approx((4 * article_ndcg + 2) / 6)
    assert result["coverage@2"] == pytest.approx(5 / 6)
    # AUC: u0 2/4 (train items 0 and 3 left out), u1 3/4, u2 6/9 on popularity.
    assert result["auc"] == pytest.approx((0.5 + 0.75 + 6 / 9) / 3)
    assert ndcg_at_k(model, data, split, k=2) == pytest.approx(result["ndcg@2"])


def test_only_held_out_positives_count(tiny: tuple[TrainedModel, TenantData, Split]) -> None:
    model, data, split = tiny
    with_negative = Interactions(
        np.r_[split.test.user, 1], np.r_[split.test.item, 0], np.r_[split.test.rating, 0], np.r_[split.test.timestamp, 0]
    )
    assert evaluate(model, data, Split(split.train, with_negative), k=2) == evaluate(model, data, split, k=2)


def test_no_test_users_gives_zeros(tiny: tuple[TrainedModel, TenantData, Split]) -> None:
    model, data, split = tiny
    result = evaluate(model, data, Split(split.train, Interactions.empty()))
    assert result["users"] == 0 and result["ndcg@10"] == 0.0 and result["auc"] == 0.0


@pytest.mark.parametrize("policy", ["exclude", "demote"])
def test_lists_are_what_user_items_serves(policy: str) -> None:
    """The batched evaluation recommends exactly rank_user's lists (checked through its hit counts)."""
    data = make_tenant(n_users=60, n_items=48, seed=5, cold_users=6)
    split = holdout_split(data, seed=5)
    model = LightFMAlgorithm("mf").fit(data, split.train, {"epochs": 2, "cold_projection": False}, FitContext(seed=5))
    assert model.user_cold is not None and model.user_cold.sum() == 6
    model.user_cold[:3] = True  # some held-out users served by popularity too
    result = evaluate(model, data, split, k=5, seen_policy=policy)
    held = split.test.subset(split.test.rating == 1)
    expected_hits: dict[int, int] = {}
    served_items: set[int] = set()
    for user in np.unique(held.user):
        relevant = held.item[held.user == user]
        for t in np.unique(model.item_types[relevant]):
            served = [i for i, _ in rank_user(model, int(user), int(t), 5, seen_policy=policy)]
            expected_hits[int(t)] = expected_hits.get(int(t), 0) + int(np.isin(served, relevant).sum())
            served_items.update(served)
    assert result["coverage@5"] == pytest.approx(len(served_items) / data.n_items)
    for name, values in result["per_type"].items():
        t = TYPE_INDEX[name]
        assert values["precision@5"] * values["users"] * 5 == pytest.approx(expected_hits[t])


def test_unknown_seen_policy_is_rejected(tiny: tuple[TrainedModel, TenantData, Split]) -> None:
    model, data, split = tiny
    with pytest.raises(ValueError, match="seen_policy"):
        evaluate(model, data, split, seen_policy="keep")
