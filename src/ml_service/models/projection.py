"""Cold-start users from side features: a ridge regression from user features to warm users' factor vectors."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.linear_model import Ridge

import dataclasses

from ml_service.models.parts import FactorModel

DEFAULT_RIDGE_ALPHA = 1.0
# Up to this many feature columns the ridge is solved from its normal equations (a dense d x d system, well
# under a second); sklearn's sparse solver runs one conjugate-gradient solve per target column, which took 5 s
# on a 20k-user tenant with 65 targets. Above it, sklearn's solver keeps memory at O(nnz).
DENSE_SOLVE_MAX_FEATURES = 4000


def project_cold_users(
    part: FactorModel, user_side: sp.csr_matrix, warm_mask: np.ndarray, *, alpha: float = DEFAULT_RIDGE_ALPHA
) -> tuple[FactorModel, int]:
    """The part with the factor rows (and biases) of users not in `warm_mask` filled from their side features, and
    how many were.

    The regression is fitted on warm users (their side features -> their factor vector and bias). A cold user is
    projected only when they have at least one side feature (otherwise the regression could only return the mean
    warm user); projected users are marked not cold. Does nothing when no warm user has side features.
    """
    warm_mask = np.asarray(warm_mask, dtype=bool)
    user_side = sp.csr_matrix(user_side, dtype=np.float32)
    has_features = np.diff(user_side.indptr) > 0
    cold = np.flatnonzero(~warm_mask & has_features)
    train = np.flatnonzero(warm_mask & has_features)
    if cold.size == 0 or train.size < 2 or user_side.shape[1] == 0:
        return part, 0
    targets = np.hstack([np.asarray(part.user_factors[train], np.float64), np.asarray(part.user_biases[train], np.float64)[:, None]])
    if user_side.shape[1] <= DENSE_SOLVE_MAX_FEATURES:
        projected = _ridge_normal_equations(user_side[train], targets, user_side[cold], alpha)
    else:
        ridge = Ridge(alpha=alpha, fit_intercept=True).fit(user_side[train], targets)
        projected = ridge.predict(user_side[cold]).astype(np.float32)
    # The part is frozen and its arrays may be read-only (memory-mapped): write into fresh copies.
    user_factors = np.array(part.user_factors, dtype=np.float32, copy=True)
    user_factors[cold] = projected[:, :-1]
    user_biases = np.array(part.user_biases, dtype=np.float32, copy=True)
    user_biases[cold] = projected[:, -1]
    user_cold = np.array(part.user_cold, dtype=bool, copy=True)
    user_cold[cold] = False
    return dataclasses.replace(part, user_factors=user_factors, user_biases=user_biases, user_cold=user_cold), int(cold.size)


def _ridge_normal_equations(x: sp.csr_matrix, y: np.ndarray, x_new: sp.csr_matrix, alpha: float) -> np.ndarray:
    """Ridge with an unpenalised intercept (sklearn's fit_intercept=True), solved on centred normal equations."""
    n = x.shape[0]
    x = sp.csr_matrix(x, dtype=np.float64)  # a float32 Gram, centred, can lose positive definiteness to rounding
    x_mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    y_mean = y.mean(axis=0)
    xtx = (x.T @ x).toarray() - n * np.outer(x_mean, x_mean)
    xty = np.asarray(x.T @ y, dtype=np.float64) - n * np.outer(x_mean, y_mean)
    xtx[np.diag_indices_from(xtx)] += alpha
    try:
        coef = scipy.linalg.solve(xtx, xty, assume_a="pos")
    except np.linalg.LinAlgError:
        # Not numerically positive definite (MovieLens-1M's demographics made LDA's projection fail this way):
        # the least-squares solution of the same normal equations instead of losing the algorithm.
        coef = scipy.linalg.lstsq(xtx, xty)[0]
    intercept = y_mean - x_mean @ coef
    return (np.asarray(x_new @ coef) + intercept).astype(np.float32)
