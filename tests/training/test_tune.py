"""Tests for tuning: the best candidate wins, the deadline is respected, the final refit keeps the choice."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

import numpy as np

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import FactorModel
from ml_service.models.lightfm_modes import LightFMAlgorithm
from ml_service.models.popular import PopularAlgorithm
from ml_service.training.context import TrainContext
from ml_service.training.tune import fit_final, tune
from tests.synthetic import make_tenant


class ShuffledPopular(PopularAlgorithm):
    """Popularity, but the first candidate ranks by a seeded random score: a real, clearly worse setting."""

    name = "shuffled_popular"

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [{"shuffle": True}, {"half_life_days": 30.0}, {"half_life_days": 30.0, "extra": 1}]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> FactorModel:
        part = super().fit(data, train, params, ctx)
        if params.get("shuffle"):
            noise = np.random.default_rng(ctx.seed).random(data.n_items).astype(np.float32)
            part = dataclasses.replace(part, item_biases=noise)
        return dataclasses.replace(part, params=dict(params))


def test_keeps_the_best_candidate() -> None:
    data = make_tenant(seed=2)
    result = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0))
    assert result.fits == 3
    assert result.params == {"half_life_days": 30.0}  # ties keep the earlier candidate
    assert result.candidates[0]["ndcg@10"] < result.candidates[1]["ndcg@10"]
    assert result.validation_metrics["ndcg@10"] == result.candidates[1]["ndcg@10"]


def test_passed_deadline_still_fits_the_first_candidate() -> None:
    data = make_tenant(seed=2)
    result = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0, deadline=time.monotonic() - 1))
    assert result.fits == 1 and result.params == {"shuffle": True}


def test_max_candidates_tries_only_the_first_ones() -> None:
    data = make_tenant(seed=2)
    result = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0), max_candidates=2)
    assert result.fits == 2 and [c["params"] for c in result.candidates] == [{"shuffle": True}, {"half_life_days": 30.0}]


def test_a_candidate_under_drop_below_ends_the_tuning_and_says_why() -> None:
    data = make_tenant(seed=2)
    first = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0))
    shuffled = first.candidates[0]["ndcg@10"]  # the first (bad) candidate's score
    stopped = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0), drop_below=shuffled + 1e-6)
    assert stopped.fits == 1 and stopped.params == {"shuffle": True}
    assert stopped.dropped.startswith("2 of 3 candidates not tried")
    kept = tune(ShuffledPopular(), TrainContext(data, threads=1, seed=0), drop_below=shuffled - 1e-6)
    assert kept.fits == 3 and kept.dropped == "" and kept.params == first.params


def test_lightfm_tuning_then_final_fit() -> None:
    data = make_tenant(n_users=100, n_items=60, seed=3)
    algorithm = LightFMAlgorithm("hybrid")
    result = tune(algorithm, TrainContext(data, threads=1, seed=4))
    assert result.fits == len(algorithm.candidates(data))
    assert ("hybrid", False) in result.features
    epochs = result.params["epochs"]
    assert epochs >= 1 and result.model_on_train.params == result.params
    assert result.validation_metrics["split"]["validation"] > 0
    final = fit_final(algorithm, result.params, TrainContext(data, threads=1, seed=4, features=result.features),
                      validation_metrics=result.validation_metrics)
    final.validate()
    assert final.params["epochs"] == epochs and "epoch_scores" not in final.info  # fixed epochs, no evaluation
    assert final.metrics["ndcg@10"] == result.validation_metrics["ndcg@10"]
    assert (final.positives != data.positive_matrix()).nnz == 0  # refit on all interactions
