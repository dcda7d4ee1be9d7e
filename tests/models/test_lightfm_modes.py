"""Tests for the LightFM reference modes: quality against popularity, seeding, early stopping, exported arrays."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ml_service.data.features import build_features
from ml_service.models import registry
from ml_service.models.base import FitContext, TrainedModel, score_users
from ml_service.models.lightfm_modes import LightFMAlgorithm, cached_features
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import holdout_split
from tests.synthetic import make_tenant
from ml_service.models.base import assemble
from ml_service.models.extras import validation_extras
from tests.models.support import fitted

ARRAYS = ("user_factors", "item_factors", "user_biases", "item_biases")


@pytest.fixture(scope="module")
def tenant():
    data = make_tenant(seed=0)
    return data, holdout_split(data, seed=1)


@pytest.mark.parametrize("mode", ["hybrid", "partial", "mf"])
def test_each_mode_beats_popularity(tenant, mode: str) -> None:
    data, split = tenant
    popular = ndcg_at_k(fitted(PopularAlgorithm(), data, split.train, {}, FitContext()), data, split)
    algorithm = registry.get(mode)
    model = fitted(algorithm, data, split.train, algorithm.candidates(data)[0] | {"epochs": 5}, FitContext(seed=1))
    model.validate()
    assert ndcg_at_k(model, data, split) > popular + 0.1


@pytest.mark.parametrize("mode", ["hybrid", "mf"])
def test_same_seed_same_model(tenant, mode: str) -> None:
    data, split = tenant
    fit = lambda seed: fitted(LightFMAlgorithm(mode), data, split.train, {"epochs": 3}, FitContext(seed=seed, threads=1))
    first, again, other = fit(3), fit(3), fit(4)
    for name in ARRAYS:
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_early_stopping_keeps_the_best_epoch(tenant) -> None:
    data, split = tenant
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.29, 0.9, 0.9])
    calls: list[TrainedModel] = []

    def evaluate(model: TrainedModel) -> float:
        calls.append(model)
        return next(scripted)

    params = {"epochs": 99, "patience": 3}
    best = fitted(LightFMAlgorithm("mf"), data, split.train, params, FitContext(seed=2, evaluate=evaluate))
    assert len(calls) == 5  # epochs 3, 4, 5 did not beat epoch 2
    assert best.params["epochs"] == 2 and best.info["epoch_scores"] == [0.1, 0.3, 0.2, 0.25, 0.29]
    assert best.scoring is calls[1]
    # The kept arrays are epoch 2's, not overwritten by later epochs: a fresh 2-epoch fit reproduces them.
    direct = fitted(LightFMAlgorithm("mf"), data, split.train, best.params, FitContext(seed=2))
    for name in ARRAYS:
        assert np.array_equal(getattr(best, name), getattr(direct, name)), name


def test_early_stopping_on_validation_ndcg_records_epochs(tenant) -> None:
    data, split = tenant
    params = {"max_epochs": 30, "patience": 2}
    extras = validation_extras(data, split.train)
    model = fitted(
        LightFMAlgorithm("mf"), data, split.train, params,
        FitContext(seed=1, evaluate=lambda part: ndcg_at_k(assemble(data, "mf", part, extras), data, split)),
    )
    scores = model.info["epoch_scores"]
    assert 1 <= model.params["epochs"] < len(scores) <= 30
    assert scores[model.params["epochs"] - 1] == max(scores)
    assert ndcg_at_k(model, data, split) == pytest.approx(max(scores))


def test_partial_mode_with_competencies() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=3, competencies=True)
    features = build_features(data, "partial")
    assert any(name.startswith("competencies_scale_") for name in features.user_names)
    model = fitted(LightFMAlgorithm("partial"), data, data.interactions, {"epochs": 2}, FitContext())
    model.validate()
    assert np.isfinite(score_users(model, np.arange(data.n_users))).all()


def test_exported_arrays(tenant) -> None:
    data, split = tenant
    model = fitted(LightFMAlgorithm("hybrid"), data, split.train, {"epochs": 2, "no_components": 16}, FitContext())
    model.validate()
    assert model.user_factors is not None and model.user_factors.shape == (data.n_users, 16)
    # The algorithm returns its scoring part only: similar-item vectors are the pipeline's (models/extras.py).
    assert "similarity_vectors" not in model.scoring.arrays()
    assert (model.positives != data.positive_matrix(split.train)).nnz == 0
    assert model.item_warm is not None and model.item_warm.sum() == np.unique(split.train.item).size
    assert model.user_cold is not None and not model.user_cold.any()  # features give every user a vector
    assert model.params["epochs"] == 2 and model.params["learning_schedule"] == "adagrad"


def test_mf_cold_users_are_cold_or_projected() -> None:
    data = make_tenant(n_users=80, n_items=40, seed=4, cold_users=5)
    plain = fitted(LightFMAlgorithm("mf"), data, data.interactions, {"epochs": 2, "cold_projection": False}, FitContext())
    assert plain.user_cold is not None and np.flatnonzero(plain.user_cold).tolist() == list(range(75, 80))
    projected = fitted(LightFMAlgorithm("mf"), data, data.interactions, {"epochs": 2}, FitContext())
    assert projected.user_cold is not None and not projected.user_cold.any()
    assert projected.info["projected_users"] == 5
    assert projected.user_factors is not None and plain.user_factors is not None
    assert np.array_equal(projected.user_factors[:75], plain.user_factors[:75])
    assert not np.allclose(projected.user_factors[75:], plain.user_factors[75:])


def test_features_are_built_once_per_mode_and_identity(tenant) -> None:
    data, split = tenant
    cache: dict = {}
    ctx = FitContext(features=cache, identity_features=True)
    fitted(LightFMAlgorithm("partial"), data, split.train, {"epochs": 1}, ctx)
    first = cache[("partial", True)]
    assert cached_features(data, "partial", ctx) is first
    assert first.user is not None and first.user.shape[1] > data.n_users  # identity columns appended


def test_candidates_and_registry(tenant) -> None:
    data, _ = tenant
    for mode in ("hybrid", "partial", "mf"):
        algorithm = registry.get(mode)
        assert algorithm.name == mode
        assert 2 <= len(algorithm.candidates(data)) <= 4
    with pytest.raises(ValueError, match="at least one user"):
        empty = dataclasses.replace(data, users=dataclasses.replace(data.users, ids=[]))
        fitted(LightFMAlgorithm("mf"), empty, data.interactions, {}, FitContext())
