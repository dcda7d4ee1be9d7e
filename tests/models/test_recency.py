"""Recency-weighted histories: weights by hand, the half-life chosen by validation, kept by the refit, and a gain."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ml_service.data.tenant import Interactions
from ml_service.models.base import FitContext, assemble
from ml_service.models.ease import EASEAlgorithm
from ml_service.models.edlae import EDLAEAlgorithm
from ml_service.models.extras import validation_extras
from ml_service.models.knn import ItemKNNAlgorithm
from ml_service.models.recency import (
    HALF_LIVES, LOW_FLOOR_MARGIN, LOW_HISTORY_WEIGHT, MIN_HISTORY_WEIGHT, recency_weights, with_recency,
)
from ml_service.models.seq_edlae import SeqEDLAEAlgorithm
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.synthetic import make_tenant


def test_weights_halve_every_half_life_back_from_each_learners_newest() -> None:
    data = make_tenant(n_users=3, n_items=4, seed=3)
    train = Interactions(
        np.array([0, 0, 0, 1, 0], np.int32), np.array([3, 1, 2, 0, 3], np.int32),
        np.ones(5, np.int8), np.array([10, 30, 20, 5, 1], np.int64),
    )
    got = recency_weights(data, train, 1.0).toarray()
    expected = np.zeros((3, 4), np.float32)
    expected[0, [1, 2, 3]] = [1.0, 0.5, 0.25]  # newest first; item 3's older repeat does not add to it
    expected[1, 0] = 1.0
    np.testing.assert_allclose(got, expected)
    np.testing.assert_array_equal(recency_weights(data, train, math.inf).toarray(), expected > 0)


def test_old_interactions_keep_the_floor_weight() -> None:
    data = make_tenant(n_users=1, n_items=6, seed=3)
    train = Interactions(np.zeros(6, np.int32), np.arange(6, dtype=np.int32), np.ones(6, np.int8),
                         np.arange(6, dtype=np.int64))
    got = recency_weights(data, train, 1.0).toarray()[0]
    np.testing.assert_allclose(got, [MIN_HISTORY_WEIGHT] * 2 + [0.125, 0.25, 0.5, 1.0])
    got = recency_weights(data, train, 1.0, LOW_HISTORY_WEIGHT).toarray()[0]
    np.testing.assert_allclose(got, [1 / 32, 1 / 16, 0.125, 0.25, 0.5, 1.0])


def test_the_low_floor_is_kept_only_when_it_validates_clearly_better() -> None:
    data = make_tenant(seed=2)
    part = ItemKNNAlgorithm().fit(data, data.interactions, {"half_life": math.inf}, FitContext(threads=1, seed=1))

    def chosen_with(low_scores: list[float]):
        # default floor: ∞ 0.30, 30 0.40, 10 0.35 (stop); low floor from 30 down: given scores
        scores = iter([0.30, 0.40, 0.35] + low_scores)
        return with_recency(part, data, data.interactions, {}, FitContext(evaluate=lambda _: next(scores)))

    clearly = chosen_with([0.40, 0.45, 0.44])  # 30@0.001 0.40, 10@0.001 0.45 > 0.40 x 1.10, 4@0.001 worse: stop
    assert clearly.params["half_life"] == 10.0 and clearly.params["history_floor"] == LOW_HISTORY_WEIGHT
    assert list(clearly.info["validation_by_half_life"])[3:] == ["30.0@0.001", "10.0@0.001", "4.0@0.001"]
    barely = chosen_with([0.41, 0.40])  # within the margin: the default floor stays, and no key says so
    assert barely.params["half_life"] == 30.0 and "history_floor" not in barely.params


def drifting_tenant(seed: int):
    """Learners take up off-topic items first and their own topic's items last: their newest say what is next."""
    data = make_tenant(n_users=240, n_items=120, seed=seed, per_user=16, in_group=0.5)
    inter = data.interactions
    own = (inter.item % 4) == (inter.user % 4)
    # own-topic interactions in the last 10 days, the others 30-90 days ago
    rng = np.random.default_rng(seed)
    age_days = np.where(own, rng.uniform(0, 10, len(inter)), rng.uniform(30, 90, len(inter)))
    timestamp = (inter.timestamp.max() - age_days * 86400).astype(np.int64)
    return dataclasses.replace(data, interactions=Interactions(inter.user, inter.item, inter.rating, timestamp))


@pytest.mark.parametrize("algorithm", [ItemKNNAlgorithm(), EASEAlgorithm(), EDLAEAlgorithm(), SeqEDLAEAlgorithm()],
                         ids=lambda a: a.name)
def test_validation_picks_a_half_life_that_beats_no_decay_on_drifting_learners(algorithm) -> None:
    data = drifting_tenant(seed=5)
    split = holdout_split(data, 0.2, seed=5, protocol="latest")
    extras = validation_extras(data, split.train)

    def score(part) -> float:
        return ndcg_at_k(assemble(data, algorithm.name, part, extras), data, split)

    params = algorithm.candidates(data)[0]
    plain = algorithm.fit(data, split.train, params | {"half_life": math.inf}, FitContext(threads=1, seed=1))
    chosen = algorithm.fit(data, split.train, params, FitContext(threads=1, seed=1, evaluate=score))
    tried = chosen.info["validation_by_half_life"]
    assert math.isfinite(chosen.params["half_life"])
    floor = chosen.params.get("history_floor")
    key = str(chosen.params["half_life"]) + ("" if floor is None else f"@{floor:g}")
    default_floor = {k: v for k, v in tried.items() if "@" not in k}
    low_floor = {k: v for k, v in tried.items() if "@" in k}
    assert tried[key] == max(low_floor.values() if floor is not None else default_floor.values())
    if floor is None:  # the low floor, when tried, was not clearly better
        assert all(v <= max(default_floor.values()) * (1 + LOW_FLOOR_MARGIN) for v in low_floor.values())
    else:
        assert tried[key] > max(default_floor.values()) * (1 + LOW_FLOOR_MARGIN)
    assert score(chosen) > score(plain) + 0.02
    # the refit (no validation) keeps the chosen half-life
    refit = algorithm.fit(data, data.interactions, chosen.params, FitContext(threads=1, seed=1))
    assert refit.params["half_life"] == chosen.params["half_life"]
    assert refit.params.get("history_floor") == chosen.params.get("history_floor")
    assert "validation_by_half_life" not in refit.info


def test_search_stops_at_the_first_half_life_that_validates_worse_and_keeps_no_key_for_no_decay() -> None:
    data = make_tenant(seed=2)
    part = ItemKNNAlgorithm().fit(data, data.interactions, {"half_life": math.inf}, FitContext(threads=1, seed=1))
    scores = iter([0.5, 0.4, 0.9])  # ∞ best so far, the second worse: the third is never tried
    chosen = with_recency(part, data, data.interactions, {}, FitContext(evaluate=lambda _: next(scores)))
    assert list(chosen.info["validation_by_half_life"]) == [str(HALF_LIVES[0]), str(HALF_LIVES[1])]
    assert "half_life" not in chosen.params
    assert (chosen.history != part.history).nnz == 0


def test_without_varying_timestamps_the_history_is_left_alone() -> None:
    data = make_tenant(seed=2)
    inter = data.interactions
    flat = Interactions(inter.user, inter.item, inter.rating, np.full(len(inter), 5, np.int64))
    part = ItemKNNAlgorithm().fit(data, flat, {}, FitContext(threads=1, seed=1, evaluate=lambda _: 1.0))
    assert "half_life" not in part.params and "validation_by_half_life" not in part.info
