"""EASE: the closed-form item-item model B = I - P / diag(P), P = (XᵀX + λI)⁻¹ (Steck, 2019)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
from threadpoolctl import threadpool_limits

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import ItemItemModel
from ml_service.models.recency import with_recency
from ml_service.models.fields import history_matrix
from ml_service.models.registry import register

# The inversion holds XᵀX and its inverse as dense float64 (2 x items² x 8 bytes) and the served model keeps
# items² float32: 15,000 items is ~3.6 GB while fitting and 0.9 GB served, about what one tenant may take.
MAX_ITEMS = 15_000
LAMBDA_SCALES = (4.0, 1.0, 16.0)  # λ = scale x mean interactions per item (first = default), so λ follows density


class CatalogueTooLarge(ValueError):
    """The tenant has more items than a dense item-item model can hold; `auto` skips the algorithm."""

    def __init__(self, algorithm: str, n_items: int, limit: int, bytes_needed: int):
        super().__init__(
            f"{algorithm} cannot train on {n_items:,} items: its limit is {limit:,} items because it needs a dense "
            f"{n_items:,} x {n_items:,} matrix (about {bytes_needed / 2**30:.1f} GiB); "
            "choose als, lda, mf, partial or hybrid for this tenant"
        )
        self.n_items = n_items
        self.limit = limit
        self.bytes_needed = bytes_needed


class DenseItemItemLimit:
    """A catalogue-size limit for algorithms that hold a dense items x items matrix (EASE, item-kNN)."""

    name: str
    bytes_per_pair: int  # bytes the algorithm needs per (item, item) entry at its peak

    def __init__(self, max_items: int):
        self.max_items = max_items

    def supports(self, data: TenantData) -> tuple[bool, str]:
        """(True, "") when the catalogue fits under the limit, else (False, the reason)."""
        if data.n_items > self.max_items:
            return False, str(self._too_large(data.n_items))
        return True, ""

    def _too_large(self, n_items: int) -> CatalogueTooLarge:
        return CatalogueTooLarge(self.name, n_items, self.max_items, self.bytes_per_pair * n_items * n_items)


class EASEAlgorithm(DenseItemItemLimit):
    """Embarrassingly shallow autoencoder: a ridge regression of every item on all the others, zero diagonal."""

    name = "ease"
    bytes_per_pair = 2 * 8  # the float64 Gram matrix and its inverse

    def __init__(self, max_items: int = MAX_ITEMS):
        super().__init__(max_items)

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        per_item = len(data.interactions) / max(data.n_items, 1)
        return [
            {"lambda": round(max(scale * per_item, 1.0), 3), "weighting": "binary"} for scale in LAMBDA_SCALES
        ]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> ItemItemModel:
        if data.n_items > self.max_items:
            raise self._too_large(data.n_items)
        weighting = str(params.get("weighting", "binary"))
        lam = float(params.get("lambda", 100.0))
        history = history_matrix(data, train, weighting)
        with threadpool_limits(limits=max(ctx.threads, 1)):
            item_item = ease_weights(history, lam)
        user_cold = np.diff(history.indptr) == 0
        part = ItemItemModel(
            item_item=item_item,
            history=history,
            user_cold=user_cold,
            params={"lambda": lam, "weighting": weighting},
        )
        return with_recency(part, data, train, params, ctx)  # models/recency.py



def ease_weights(history: Any, lam: float) -> np.ndarray:
    """(n_items, n_items) float32 B with zero diagonal: B = I - P diag(1/diag(P)), P = (XᵀX + λI)⁻¹."""
    gram = np.asarray((history.T @ history).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lam
    # XᵀX + λI is symmetric positive definite for λ > 0: invert through its Cholesky factor, in place.
    factor, lower = scipy.linalg.cho_factor(gram, overwrite_a=True)
    precision, info = scipy.linalg.lapack.dpotri(factor, lower=lower, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE inversion failed (LAPACK dpotri info={info}); try a larger lambda")
    # dpotri fills only the factor's triangle: mirror it onto the other one
    triangle = np.tril(precision) if lower else np.triu(precision)
    precision = triangle + np.tril(triangle, -1).T if lower else triangle + np.triu(triangle, 1).T
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


register("ease", EASEAlgorithm)
