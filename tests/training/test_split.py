"""Tests for the hold-out splits: per-user fraction, seeding, the latest protocol, validation and cold users."""

from __future__ import annotations

import numpy as np
import pytest

from ml_service.data.tenant import Interactions
from ml_service.training.split import cold_user_split, holdout_split, split_interactions, validation_split
from tests.synthetic import make_tenant


def _pairs(inter: Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.user.tolist(), inter.item.tolist()))


@pytest.mark.parametrize("protocol", ["random", "latest"])
def test_holds_out_the_fraction_of_each_qualifying_users_positives(protocol: str) -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=3, protocol=protocol)
    inter = data.interactions
    assert _pairs(split.train) | _pairs(split.test) == _pairs(inter)
    assert not _pairs(split.train) & _pairs(split.test)
    if protocol == "random":
        assert (split.test.rating == 1).all()
    for user in range(data.n_users):
        n_pos = int(((inter.user == user) & (inter.rating == 1)).sum())
        held = int(((split.test.user == user) & (split.test.rating == 1)).sum())
        expected = min(n_pos - 1, max(1, round(0.2 * n_pos))) if n_pos >= 2 else 0
        assert held == expected, (user, n_pos, held)
    assert 0.15 < int((split.test.rating == 1).sum()) / int((inter.rating == 1).sum()) < 0.3


def test_random_split_is_seeded() -> None:
    data = make_tenant(seed=1)
    first, again = holdout_split(data, seed=7), holdout_split(data, seed=7)
    assert _pairs(first.test) == _pairs(again.test)
    assert _pairs(first.test) != _pairs(holdout_split(data, seed=8).test)


def test_latest_protocol_holds_out_the_newest_positives() -> None:
    data = make_tenant(seed=2)
    split = holdout_split(data, 0.3, protocol="latest")
    inter = data.interactions
    for user in np.unique(split.test.user):
        newest_held = split.test.timestamp[split.test.user == user].min()
        kept = (split.train.user == user) & (split.train.rating == 1)
        assert (split.train.timestamp[kept] <= newest_held).all()
    assert _pairs(split.test) == _pairs(holdout_split(data, 0.3, seed=99, protocol="latest").test)
    assert len(inter) == len(split.train) + len(split.test)


def test_latest_protocol_keeps_nothing_from_the_held_out_period_in_train() -> None:
    # user 0: positives at t=1, 2, 3, 4, 5 (the newest, t=5, is held out at 0.2) and rating-0 interactions at
    # t=0 (before), t=5 (the same second) and t=6 (after); user 1 has one positive (does not qualify) and a
    # rating-0 at t=9, which stays in train. The random protocol keeps every rating-0 interaction in train.
    inter = Interactions(
        user=np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], np.int32),
        item=np.array([1, 2, 3, 4, 5, 6, 7, 8, 1, 2], np.int32),
        rating=np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0], np.int8),
        timestamp=np.array([1, 2, 3, 4, 5, 0, 5, 6, 1, 9], np.int64),
    )
    latest = split_interactions(inter, 0.2, protocol="latest")
    assert _pairs(latest.test) == {(0, 5), (0, 7), (0, 8)}
    assert _pairs(latest.train) == {(0, 1), (0, 2), (0, 3), (0, 4), (0, 6), (1, 1), (1, 2)}
    random = split_interactions(inter, 0.2, protocol="random", seed=0)
    assert (random.test.rating == 1).all() and {(0, 6), (0, 7), (0, 8), (1, 2)} <= _pairs(random.train)


def test_users_with_fewer_than_two_positives_stay_in_train() -> None:
    inter = Interactions(
        np.array([0, 0, 1, 1, 1], np.int32),
        np.array([0, 1, 0, 1, 2], np.int32),
        np.array([1, 0, 1, 1, 0], np.int8),
        np.arange(5, dtype=np.int64),
    )
    split = split_interactions(inter, 0.2, seed=0)
    assert split.test.user.tolist() == [1]  # user 1: 2 positives -> 1 held out; user 0: 1 positive -> none
    assert len(split.train) == 4


def test_validation_split_splits_train_only() -> None:
    data = make_tenant(seed=3)
    outer = holdout_split(data, seed=1)
    inner = validation_split(outer, seed=1)
    assert _pairs(inner.train) | _pairs(inner.test) == _pairs(outer.train)
    assert not _pairs(inner.test) & _pairs(outer.test)


def test_cold_user_split_holds_out_whole_users() -> None:
    data = make_tenant(seed=4)
    split = cold_user_split(data, 0.25, seed=2)
    cold = set(split.test.user.tolist())
    assert not cold & set(split.train.user.tolist())
    assert len(cold) == round(0.25 * np.unique(data.interactions.user[data.interactions.rating == 1]).size)
    assert (split.test.rating == 1).all()


def test_bad_arguments_are_reported() -> None:
    data = make_tenant(n_users=10, n_items=10)
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(data, 1.5)
    with pytest.raises(ValueError, match="protocol"):
        holdout_split(data, protocol="oldest")


def test_sample_test_users_keeps_train_and_whole_users() -> None:
    from ml_service.training.split import Split, sample_test_users

    users = np.repeat(np.arange(50), 4)
    test = Interactions(users, np.tile(np.arange(4), 50), np.ones(200, np.int8), np.zeros(200, np.int64))
    train = Interactions(np.arange(3), np.arange(3), np.ones(3, np.int8), np.zeros(3, np.int64))
    split = Split(train, test)
    sampled = sample_test_users(split, 10, seed=1)
    assert sampled.train is train
    kept = np.unique(sampled.test.user)
    assert kept.size == 10 and len(sampled.test) == 40  # every kept user keeps all their held-out rows
    assert np.array_equal(np.unique(sample_test_users(split, 10, seed=1).test.user), kept)  # seeded
    assert sample_test_users(split, 50, seed=1) is split  # small enough: unchanged
