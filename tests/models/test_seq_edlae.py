"""seq_edlae: the timeline Gram by hand, EDLAE without timestamps, beats popularity, survives the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

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


def test_graph_filters_by_hand() -> None:
    from ml_service.models.seq_edlae import graph_filters

    # 3 learners x 3 items; every item's column is independent, so the top-3 singular vectors span all items
    history = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float32))
    linear, ideal = graph_filters(history, 3, seed=0)
    per_user, per_item = np.array([2.0, 2.0, 2.0]), np.array([2.0, 2.0, 2.0])
    normalised = history.toarray() / np.sqrt(per_user)[:, None] / np.sqrt(per_item)[None, :]
    np.testing.assert_allclose(linear, normalised.T @ normalised, rtol=1e-6)
    np.testing.assert_allclose(ideal, np.eye(3), atol=1e-5)  # full rank: the low-pass filter passes everything
    # rank 1: the top singular vector of this regular graph is constant, so the filter averages over the items
    _, ideal = graph_filters(history, 1, seed=0)
    np.testing.assert_allclose(ideal, np.full((3, 3), 1 / 3), atol=1e-5)
    assert graph_filters(history, 0, seed=0)[1] is None


def test_graph_filters_lanczos_matches_the_dense_eigendecomposition(monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_service.models import seq_edlae

    rng = np.random.default_rng(3)
    history = sp.random(300, 120, density=0.08, random_state=rng, format="csr", dtype=np.float32)
    history.data[:] = 1.0
    linear, dense = seq_edlae.graph_filters(history, 10, seed=1)
    monkeypatch.setattr(seq_edlae, "GF_DENSE_ITEMS", 50)
    linear_lanczos, lanczos = seq_edlae.graph_filters(history, 10, seed=1)
    np.testing.assert_array_equal(linear, linear_lanczos)
    np.testing.assert_allclose(lanczos, dense, atol=1e-4)


def test_graph_filter_weights_change_the_timed_model_and_zero_means_off() -> None:
    data = make_tenant(seed=1)
    ctx = FitContext(threads=1, seed=1)
    algorithm = SeqEDLAEAlgorithm()
    params = algorithm.candidates(data)[0]
    assert params["gf_rank"] > 0 and params["gf_linear"] > 0 and params["gf_ideal"] > 0
    users = np.arange(data.n_users)
    with_filters = algorithm.fit(data, data.interactions, params, ctx)
    off = algorithm.fit(data, data.interactions, params | {"gf_linear": 0.0, "gf_ideal": 0.0}, ctx)
    absent = algorithm.fit(data, data.interactions, {k: v for k, v in params.items() if not k.startswith("gf_")}, ctx)
    np.testing.assert_array_equal(off.score(users), absent.score(users))  # models stored before the filters
    assert not np.allclose(with_filters.score(users), off.score(users))
    with pytest.raises(ValueError, match="gf_rank"):
        algorithm.fit(data, data.interactions, params | {"gf_rank": -1}, ctx)
