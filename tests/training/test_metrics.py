"""Tests for the offline evaluation: hand-computed values, and agreement with what /user-items serves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays
from ml_service.data.tenant import ITEM_TYPES, TYPE_INDEX, Interactions, Items, TenantData, Users
from ml_service.models.base import FitContext, TrainedModel, score_users
from ml_service.models.lightfm_modes import LightFMAlgorithm
from ml_service.ranking import rank_user
from ml_service.training.metrics import evaluate, ndcg_at_k
from ml_service.training.split import Split, holdout_split
from tests.synthetic import make_tenant
from tests.models.support import fitted

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
    model = model_from_arrays(
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
    model = fitted(LightFMAlgorithm("mf"), data, split.train, {"epochs": 2, "cold_projection": False}, FitContext(seed=5))
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


def _random_case(seed: int, flavour: str, articles: int = 14) -> tuple[TrainedModel, TenantData, Split]:
    """A random factor model over 4 item types (one with 3 items, fewer than k), some cold users.

    Factors are small dyadic numbers, so every score is exact in float32 whatever the summation order (a batch
    and a single user score alike); "ties" uses integers in a small range and integer popularity, so scores tie
    often, also at the cut-off; "nonfinite" adds items scored -inf and +inf for everyone.
    """
    rng = np.random.default_rng(seed)
    n_users, dim = 40, 4
    type_sizes = {ARTICLE: articles, COURSE: 3, TYPE_INDEX["totara_playlist"]: 9, TYPE_INDEX["engage_microlearning"]: 6}
    types = rng.permutation(np.repeat(np.array(list(type_sizes), np.int8), list(type_sizes.values())))
    n_items = types.size
    users = Users([f"u{j}" for j in range(n_users)], *([[""] * n_users] * 3), *([[[]] * n_users] * 5),
                  [{}] * n_users, [""] * n_users)
    items = Items([f"i{j}" for j in range(n_items)], types, [], sp.csr_matrix((n_items, 0), dtype=np.float32),
                  [""] * n_items)
    # Train and held-out pairs drawn apart; some users see nearly everything (more positives than a type has).
    pairs = [(u, i) for u in range(n_users) for i in range(n_items) if rng.random() < (0.9 if u < 4 else 0.25)]
    order = rng.permutation(len(pairs))
    held = {pairs[j] for j in order[: len(pairs) // 4]}
    train_rows = [(u, i, int(rng.random() < 0.8)) for u, i in pairs if (u, i) not in held]
    train_rows = [train_rows[j] for j in rng.permutation(len(train_rows))]  # exports are not in user order
    test_rows = [(u, i, int(rng.random() < 0.85)) for u, i in sorted(held)]
    train, test = _interactions(train_rows), _interactions(test_rows)
    data = TenantData("t", users, items, train)
    if flavour == "ties":
        user_factors = rng.integers(-1, 2, (n_users, dim)).astype(np.float32)
        item_factors = rng.integers(-1, 2, (n_items, dim)).astype(np.float32)
        popularity = rng.integers(0, 3, n_items).astype(np.float32)
    else:
        user_factors = (rng.integers(-64, 65, (n_users, dim)) / 32).astype(np.float32)
        item_factors = (rng.integers(-64, 65, (n_items, dim)) / 32).astype(np.float32)
        popularity = rng.integers(0, 50, n_items).astype(np.float32)
    item_biases = (rng.integers(-8, 9, n_items) / 4).astype(np.float32)
    bad = rng.choice(n_items, 4, replace=False) if flavour == "nonfinite" else None
    model = model_from_arrays(
        algorithm="random",
        user_ids=users.ids,
        item_ids=items.ids,
        item_types=types,
        user_factors=user_factors,
        item_factors=item_factors,
        item_biases=item_biases,
        user_biases=(rng.integers(-4, 5, n_users) / 2).astype(np.float32),
        user_cold=rng.random(n_users) < 0.2,
        popularity=popularity,
        positives=data.positive_matrix(train),
    )
    if bad is not None:  # the parts refuse non-finite arrays; ranking must still cope with scores that overflow
        model.scoring.item_biases[bad] = [-np.inf, -np.inf, np.inf, -np.inf]
    return model, data, Split(train, test)


def _reference(model: TrainedModel, data: TenantData, split: Split, k: int, policy: str) -> dict[str, Any]:
    """evaluate()'s definition spelled out pair by pair with rank_user (what /user-items serves)."""
    held = split.test.subset(split.test.rating == 1)
    train_items = {u: set(split.train.item[split.train.user == u].tolist()) for u in range(data.n_users)}
    sums: dict[int, np.ndarray] = {}
    pairs: dict[int, int] = {}
    held_out: dict[int, int] = {}
    served: set[int] = set()
    aucs: list[float] = []
    for user in sorted(set(held.user.tolist())):
        relevant = set(held.item[held.user == user].tolist())
        for t in sorted({int(model.item_types[i]) for i in relevant}):
            rel_t = {i for i in relevant if model.item_types[i] == t}
            ranked = [i for i, _ in rank_user(model, user, t, k, seen_policy=policy)]
            served.update(ranked)
            hits = [i in rel_t for i in ranked]
            dcg = sum(1 / np.log2(r + 2) for r, hit in enumerate(hits) if hit)
            ideal = sum(1 / np.log2(r + 2) for r in range(min(k, len(rel_t))))
            values = np.array([sum(hits) / k, sum(hits) / len(rel_t), dcg / ideal, float(any(hits))])
            sums[t] = sums.get(t, np.zeros(4)) + values
            pairs[t] = pairs.get(t, 0) + 1
            held_out[t] = held_out.get(t, 0) + len(rel_t)
        scores = _rank_scores(model, user)
        candidates = [i for i in range(data.n_items) if i not in train_items[user]]
        positives = [i for i in candidates if i in relevant]
        negatives = [i for i in candidates if i not in relevant]
        if positives and negatives:
            wins = [(scores[p] > scores[n]) + 0.5 * (scores[p] == scores[n]) for p in positives for n in negatives]
            aucs.append(float(np.mean(wins)))
    total = sum(held_out.values())
    names = [f"{m}@{k}" for m in ("precision", "recall", "ndcg", "hit_rate")]
    per_type = {
        ITEM_TYPES[t]: {"users": pairs[t], "held_out": held_out[t]} | dict(zip(names, sums[t] / pairs[t]))
        for t in sorted(sums)
    }
    overall = sum((sums[t] / pairs[t] * held_out[t] / total for t in sums), np.zeros(4))
    return {"k": k, "users": len(set(held.user.tolist())), "held_out": total} | dict(zip(names, overall)) | {
        f"coverage@{k}": len(served) / data.n_items, "auc": float(np.mean(aucs)) if aucs else 0.0, "per_type": per_type
    }


def _rank_scores(model: TrainedModel, user: int) -> np.ndarray:
    """The scores rank_user ranks a user by (popularity when cold)."""
    if model.user_cold is not None and model.user_cold[user]:
        return np.asarray(model.popularity, dtype=np.float32)
    return score_users(model, np.array([user]))[0]


def _assert_same(result: dict[str, Any], expected: dict[str, Any]) -> None:
    assert result.keys() == expected.keys() and result["per_type"].keys() == expected["per_type"].keys()
    for name, values in result["per_type"].items():
        assert values == pytest.approx(expected["per_type"][name], abs=1e-9, rel=0)
    scalars = {key: value for key, value in result.items() if key != "per_type"}
    assert scalars == pytest.approx({key: expected[key] for key in scalars}, abs=1e-9, rel=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # demoting with inf scores gives NaN
@pytest.mark.parametrize("flavour", ["fine", "ties", "nonfinite"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_models_match_rank_user_reference(seed: int, flavour: str) -> None:
    model, data, split = _random_case(seed, flavour)
    for policy in ("exclude", "demote"):
        expected = _reference(model, data, split, 5, policy)
        for batch_size in (None, 1, 7):
            _assert_same(evaluate(model, data, split, k=5, seen_policy=policy, batch_size=batch_size), expected)


def test_lists_longer_than_63_match_rank_user_reference() -> None:
    """k = 70 on 90 articles: hit patterns too wide for the bit-code shortcut of the DCG."""
    model, data, split = _random_case(3, "ties", articles=90)
    _assert_same(evaluate(model, data, split, k=70), _reference(model, data, split, 70, "exclude"))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("flavour", ["ties", "nonfinite"])
def test_one_item_type_matches_rank_user_reference(flavour: str) -> None:
    """Every item of one type: the whole score block is ranked at once (in place with "exclude")."""
    model, data, split = _random_case(5, flavour)
    model.item_types = np.full(model.n_items, ARTICLE, np.int8)
    for policy in ("exclude", "demote"):
        expected = _reference(model, data, split, 5, policy)
        for batch_size in (None, 7):
            _assert_same(evaluate(model, data, split, k=5, seen_policy=policy, batch_size=batch_size), expected)
