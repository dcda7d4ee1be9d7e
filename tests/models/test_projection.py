"""Tests for cold-user projection: it recovers a linear map, and beats popularity for new users on known structure."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays
from ml_service.models.base import FitContext
from ml_service.models.lightfm_modes import LightFMAlgorithm
from ml_service.models.popular import PopularAlgorithm
from ml_service.models.projection import project_cold_users
from ml_service.training.metrics import ndcg_at_k
from ml_service.training.split import cold_user_split
from tests.synthetic import make_tenant
from tests.models.support import fitted


def test_recovers_a_linear_map_and_marks_users_warm() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 5)) < 0.5).astype(np.float32)
    dense[np.arange(40), np.arange(40) % 5] = 1.0  # every user has a feature...
    dense[39] = 0.0  # ...except a cold user, who stays cold
    side = sp.csr_matrix(dense)
    mapping = rng.normal(size=(5, 3)).astype(np.float32)
    truth = side @ mapping
    model = model_from_arrays(
        algorithm="x", user_ids=[str(u) for u in range(40)], item_ids=[], item_types=np.zeros(0, np.int8),
        user_factors=np.where(np.arange(40)[:, None] < 30, truth, 0).astype(np.float32),
        item_factors=np.zeros((0, 3), np.float32), user_biases=np.zeros(40, np.float32),
        user_cold=np.arange(40) >= 30,
    )
    model, count = project_cold_users(model.scoring, side, np.arange(40) < 30, alpha=1e-4)
    assert count == 9
    assert np.allclose(model.user_factors[30:39], truth[30:39], atol=0.05)
    assert model.user_cold is not None and model.user_cold.tolist() == [False] * 39 + [True]


def test_beats_popularity_for_new_users() -> None:
    data = make_tenant(seed=0)
    split = cold_user_split(data, 0.2, seed=0)
    popular = ndcg_at_k(fitted(PopularAlgorithm(), data, split.train, {}, FitContext()), data, split)
    model = fitted(LightFMAlgorithm("mf"), data, split.train, {"epochs": 5}, FitContext(seed=0))
    assert model.info["projected_users"] == 40
    assert ndcg_at_k(model, data, split) > popular + 0.2


def test_dense_solve_matches_sklearn_ridge() -> None:
    """The normal-equation solve used for up to DENSE_SOLVE_MAX_FEATURES columns is sklearn's Ridge."""
    from sklearn.linear_model import Ridge

    from ml_service.models.projection import _ridge_normal_equations

    rng = np.random.default_rng(0)
    x = sp.random(400, 30, density=0.1, random_state=1, format="csr", dtype=np.float32)
    y = rng.normal(size=(400, 5))
    x_new = sp.random(50, 30, density=0.1, random_state=2, format="csr", dtype=np.float32)
    expected = Ridge(alpha=1.0, fit_intercept=True).fit(x, y).predict(x_new)
    assert np.allclose(_ridge_normal_equations(x, y, x_new, 1.0), expected, atol=1e-4)


def test_normal_equations_that_are_not_positive_definite_still_give_a_projection() -> None:
    """Two identical columns and no ridge make the centred Gram singular: Cholesky refuses it, and the projection
    falls back to least squares (it used to raise, and `auto` lost the algorithm for the tenant)."""
    from ml_service.models.projection import _ridge_normal_equations

    rng = np.random.default_rng(3)
    column = rng.random((200, 1))
    x = sp.csr_matrix(np.hstack([column, column, rng.random((200, 2))]))
    y = x[:, [0, 2, 3]].toarray() @ np.array([[1.0], [2.0], [-1.0]]) + 0.5
    predicted = _ridge_normal_equations(x, y, x[:5], 0.0)
    assert np.isfinite(predicted).all()
    assert np.allclose(predicted, y[:5], atol=1e-3)  # the map is still recovered (the duplicated weight split)
