"""benchmarks/recbole_protocol.py against hand-computed RecBole filtering, split sizes and full-ranking metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from recbole_protocol import evaluate_scores, k_core, ranking_metrics, ratio_split, split_ids, value_filter  # noqa: E402


def test_value_filter_keeps_ratings_of_three_and_above() -> None:
    assert value_filter(np.array([1.0, 3.0, 5.0, 2.9])).tolist() == [False, True, True, False]


def test_k_core_repeats_until_nothing_is_banned() -> None:
    # item 2 has one interaction: dropping it leaves user 2 with one, so user 2 goes in the second round.
    user = np.array([0, 0, 1, 1, 2, 2])
    item = np.array([0, 1, 0, 1, 2, 0])
    assert k_core(user, item, 2, 2).tolist() == [True, True, True, True, False, False]


@pytest.mark.parametrize(("total", "cuts"), [(10, [8, 9]), (5, [3, 4]), (2, [1, 1]), (25, [21, 23]), (1, [1, 1])])
def test_split_ids_follow_recbole_rounding(total: int, cuts: list[int]) -> None:
    # 5: floor(0.5) = 0 for valid and test, each bumped to 1 while train keeps more than one;
    # 2: only the test part gets bumped, then train is down to 1 and the loop stops.
    assert split_ids(total, (0.8, 0.1, 0.1)) == cuts


def test_ratio_split_cuts_every_user_and_is_seeded() -> None:
    user = np.repeat(np.arange(3), [10, 5, 2])
    part = ratio_split(user, (0.8, 0.1, 0.1), seed=7)
    sizes = [np.bincount(part[user == u], minlength=3).tolist() for u in range(3)]
    assert sizes == [[8, 1, 1], [3, 1, 1], [1, 0, 1]]
    assert np.array_equal(part, ratio_split(user, (0.8, 0.1, 0.1), seed=7))
    assert not np.array_equal(part, ratio_split(user, (0.8, 0.1, 0.1), seed=8))


def test_full_ranking_metrics_by_hand() -> None:
    scores = np.array([
        [0.9, 0.8, 0.7, 0.6, 0.5],  # item 0 is history: list = 1, 2 -> hit at rank 2 of 2 truths
        [0.9, 0.8, 0.7, 0.6, 0.5],  # no history: list = 0, 1 -> no hit
        [0.1, 0.1, 0.1, 0.9, 0.1],  # the one truth at rank 1
        [0.5, 0.5, 0.5, 0.5, 0.5],  # all tied: the lower indices 0, 1 win -> hit at rank 2
    ])
    history = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0] * 5, [0] * 5, [0] * 5]))
    truth = sp.csr_matrix(np.array([[0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0], [0, 1, 0, 0, 0]]))
    ndcg, recall = ranking_metrics(scores, history, truth, np.arange(4), k=2)
    discount = 1 / np.log2(3)
    np.testing.assert_allclose(ndcg, [discount / (1 + discount), 0.0, 1.0, discount])
    np.testing.assert_allclose(recall, [0.5, 0.0, 1.0, 1.0])
    result = evaluate_scores(lambda users: scores[users], history, truth, k=2, batch=3)
    assert result["users"] == 4
    assert result["ndcg@2"] == pytest.approx(np.mean(ndcg))
    assert result["recall@2"] == pytest.approx(0.625)


def test_users_without_truth_are_not_averaged_and_history_is_never_a_hit() -> None:
    scores = np.array([[0.9, 0.1, 0.2], [0.9, 0.1, 0.2]])
    history = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]]))
    truth = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]]))  # user 1 has no truth; user 0's item 0 is masked
    result = evaluate_scores(lambda users: scores[users], history, truth, k=1)
    # user 0's list is [2]: item 1 (truth) is not in it -> 0 hits out of 2 truths
    assert result == {"ndcg@1": 0.0, "recall@1": 0.0, "users": 1}
