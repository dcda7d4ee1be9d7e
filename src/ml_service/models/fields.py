"""Helpers the algorithms share: content vectors, confidence and history matrices, co-occurrence embedding, bias-free factors."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.parts import FactorModel

CONTENT_DIM = 128  # width of the content vectors served for items without interactions
SIMILARITY_DIM = 64  # width of the co-occurrence embedding of item-item models


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """float32 copy with every non-zero row scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def content_vectors(data: TenantData, cache: Any = None) -> np.ndarray:
    """Item content vectors (tags + document TF-IDF), computed once per tenant and shared through `cache`.

    `cache` (a FitContext's features) may be a dict or an object with a `content_vectors` attribute; both are reused.
    """
    cached = cache.get("content_vectors") if isinstance(cache, dict) else getattr(cache, "content_vectors", None)
    if cached is not None and len(cached) == data.n_items:
        return np.asarray(cached, dtype=np.float32)
    from ml_service.data.features import item_content_vectors

    vectors = normalise_rows(item_content_vectors(data, CONTENT_DIM))
    if vectors.shape[1] == 0:  # no tags and no text; one zero column, as zero-size arrays cannot be memory-mapped
        vectors = np.zeros((data.n_items, 1), dtype=np.float32)
    if isinstance(cache, dict):
        cache["content_vectors"] = vectors
    return vectors


def confidence_matrix(data: TenantData, train: Interactions, alpha: float) -> sp.csr_matrix:
    """(n_users, n_items) CSR of 1 + alpha * (rating + 1): the reference sample weight rating + 1, scaled."""
    weights = 1.0 + alpha * (np.asarray(train.rating, dtype=np.float32) + 1.0)
    return sp.csr_matrix(
        (weights.astype(np.float32), (train.user, train.item)), shape=(data.n_users, data.n_items), dtype=np.float32
    )


def history_matrix(data: TenantData, train: Interactions, weighting: str) -> sp.csr_matrix:
    """The users' inputs of an item-item model: 1 per interaction ("binary") or rating + 1 ("rating")."""
    if weighting == "binary":
        values = np.ones(len(train), dtype=np.float32)
    elif weighting == "rating":
        values = np.asarray(train.rating, dtype=np.float32) + 1.0
    else:
        raise ValueError(f"unknown weighting {weighting!r}; expected 'binary' or 'rating'")
    matrix = sp.csr_matrix((values, (train.user, train.item)), shape=(data.n_users, data.n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def cooccurrence_embedding(history: sp.csr_matrix, item_warm: np.ndarray, seed: int, dim: int = SIMILARITY_DIM) -> np.ndarray:
    """(n_items, <=dim) L2-normalised item vectors whose cosines approximate co-occurrence cosine.

    A truncated SVD of the column-normalised user-item matrix: item i's column x_i / |x_i| ≈ U S v_i, so
    v_i S has (approximately) the same dot products as the normalised columns, at a fixed small width
    instead of n_users or n_items. Items without interactions get zero vectors (content serves them).
    """
    n_users, n_items = history.shape
    binary = history.copy().tocsc()
    binary.data = np.ones_like(binary.data)
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    scaled = binary @ sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0))
    rank = min(dim, n_users - 1, n_items - 1)
    if rank < 1 or scaled.nnz == 0:
        return np.zeros((n_items, 1), dtype=np.float32)
    from sklearn.utils.extmath import randomized_svd

    _, s, vt = randomized_svd(scaled, n_components=rank, n_iter=5, random_state=seed)
    vectors = normalise_rows((vt.T * s).astype(np.float32))
    vectors[~item_warm] = 0.0
    return vectors


def bias_free_factor_model(
    user_factors: np.ndarray, item_factors: np.ndarray, user_warm: np.ndarray, item_warm: np.ndarray, params: dict[str, Any]
) -> FactorModel:
    """A factor model without biases (ALS, LDA) whose users without training data are cold (zero factors) and
    whose items nobody has touched get zero factors (no made-up scores)."""
    user_factors = np.asarray(user_factors, dtype=np.float32).copy()
    user_factors[~user_warm] = 0.0
    item_factors = np.asarray(item_factors, dtype=np.float32).copy()
    item_factors[~item_warm] = 0.0
    return FactorModel(
        user_factors=user_factors,
        item_factors=item_factors,
        user_biases=np.zeros(user_factors.shape[0], dtype=np.float32),
        item_biases=np.zeros(item_factors.shape[0], dtype=np.float32),
        user_cold=~user_warm,
        params=params,
    )
