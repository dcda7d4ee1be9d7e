"""seq_edlae: the timeline Gram by hand, EDLAE without timestamps, beats popularity, survives the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ml_service.data.tenant import Interactions
from ml_service.models.base import ITEM_ITEM, FitContext, assemble, score_users
from ml_service.models.edlae import EDLAEAlgorithm
from ml_service.models.extras import validation_extras
from ml_service.models.popular import PopularAlgorithm
from ml_service.models.seq_edlae import SeqEDLAEAlgorithm, fit_cost, timeline_gram
from ml_service.store import ModelStore
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.models.support import fitted
from tests.synthetic import make_tenant


def test_timeline_gram_counts_pairs_within_the_window_of_each_learner() -> None:
    # learner 0 in time order: items 2, 0, 1; learner 1: items 1, 3 (rows given out of order on purpose)
    train = Interactions(
        np.array([0, 1, 0, 0, 1], np.int32), np.array([1, 3, 2, 0, 1], np.int32),
        np.ones(5, np.int8), np.array([30, 20, 10, 20, 10], np.int64),
    )
    expected = np.zeros((4, 4))
    for a, b in ((2, 0), (0, 1), (1, 3)):  # window 1: neighbours in time only
        expected[a, b] = expected[b, a] = 1
    expected[np.diag_indices(4)] = [1, 2, 1, 1]
    np.testing.assert_array_equal(timeline_gram(train, 4, 1), expected)
    expected[2, 1] = expected[1, 2] = 1  # window 2 adds learner 0's items 2 and 1
    np.testing.assert_array_equal(timeline_gram(train, 4, 2), expected)


def test_without_varying_timestamps_it_ranks_as_edlae() -> None:
    data = make_tenant(seed=2)
    inter = data.interactions
    flat = dataclasses.replace(data, interactions=Interactions(inter.user, inter.item, inter.rating,
                                                               np.full(len(inter), 5, np.int64)))
    ctx = FitContext(threads=1, seed=1)
    algorithm = SeqEDLAEAlgorithm()
    params = algorithm.candidates(flat)[0]
    model = algorithm.fit(flat, flat.interactions, params, ctx)
    edlae = EDLAEAlgorithm().fit(flat, flat.interactions, params, ctx)
    assert model.info["timeline"] is False
    users = np.arange(data.n_users)
    ours, theirs = model.score(users), edlae.score(users)
    scale = ours[theirs != 0] / theirs[theirs != 0]
    np.testing.assert_allclose(scale, scale[0], rtol=1e-3)  # one positive factor: the same rankings
    assert scale[0] > 0


def test_beats_popular_and_round_trips_through_the_store(tmp_path: Path) -> None:
    data = make_tenant(seed=1)
    split = holdout_split(data, 0.2, seed=1)
    ctx = FitContext(threads=1, seed=1)
    algorithm = SeqEDLAEAlgorithm()
    model = fitted(algorithm, data, split.train, algorithm.candidates(data)[0], ctx)
    model.validate()
    assert model.kind == ITEM_ITEM and model.info["timeline"] is True
    popular = fitted(PopularAlgorithm(), data, split.train, {}, ctx, serving=False)
    assert ndcg_at_k(model, data, split) > ndcg_at_k(popular, data, split) + 0.1
    store = ModelStore(tmp_path)
    store.publish(data.tenant, model)
    loaded = store.load(data.tenant).model
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(score_users(loaded, users), score_users(model, users))
    assert loaded.params == model.params


def test_cost_grows_with_the_catalogue_and_the_interactions() -> None:
    small_seconds, small_bytes = fit_cost(10_000, 1_000, 500_000)
    large_seconds, large_bytes = fit_cost(10_000, 10_000, 500_000)
    assert large_seconds > 100 * small_seconds / 2 and large_bytes > 50 * small_bytes
    assert fit_cost(10_000, 1_000, 5_000_000)[0] > small_seconds
