"""Item-kNN: shrunk cosine similarity of items' co-occurrence, top-K neighbours, content similarity for cold items."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import ItemItemModel
from ml_service.models.recency import with_recency
from ml_service.models.ease import DenseItemItemLimit
from ml_service.models.fields import content_vectors, history_matrix
from ml_service.models.popular import warm_items
from ml_service.models.registry import register

# The served item_item matrix is dense float32 (items² x 4 bytes): 10,000 items is 400 MB per tenant.
MAX_ITEMS = 10_000


class ItemKNNAlgorithm(DenseItemItemLimit):
    """score(u, j) = Σ_i h_ui s_ij over the K most similar items i of j.

    s_ij = x_i·x_j / (|x_i| |x_j| + shrink) on binary item columns. Items without training interactions get
    `content_weight` x the cosine of their content vectors to the K most content-similar items instead, so new
    content can be recommended before anyone has touched it.
    """

    name = "knn"
    bytes_per_pair = 4  # the float32 similarity matrix

    def __init__(self, max_items: int = MAX_ITEMS):
        super().__init__(max_items)

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [
            {"neighbours": 50, "shrink": 10.0, "content_weight": 0.3},
            {"neighbours": 20, "shrink": 10.0, "content_weight": 0.3},
            {"neighbours": 200, "shrink": 50.0, "content_weight": 0.3},
        ]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> ItemItemModel:
        if data.n_items > self.max_items:
            raise self._too_large(data.n_items)
        neighbours = int(params.get("neighbours", 50))
        shrink = float(params.get("shrink", 10.0))
        content_weight = float(params.get("content_weight", 0.3))
        history = history_matrix(data, train, "binary")
        warm = warm_items(data, train)
        similarity = cooccurrence_cosine(history, shrink)
        if content_weight > 0 and (~warm).any() and warm.any():
            content = content_vectors(data, ctx.features)
            # Cold item j's column: how much each warm item in a history votes for it, by content alone.
            similarity[:, ~warm] = content_weight * np.maximum(content @ content[~warm].T, 0.0)
            similarity[np.ix_(~warm, ~warm)] = 0.0
            np.fill_diagonal(similarity, 0.0)
        item_item = keep_top_neighbours(similarity, neighbours)
        part = ItemItemModel(
            item_item=item_item,
            history=history,
            user_cold=np.diff(history.indptr) == 0,
            params={"neighbours": neighbours, "shrink": shrink, "content_weight": content_weight},
        )
        return with_recency(part, data, train, params, ctx)  # models/recency.py


def cooccurrence_cosine(history: sp.csr_matrix, shrink: float) -> np.ndarray:
    """(n_items, n_items) float32 shrunk cosine of binary item columns, zero diagonal."""
    binary = history.copy()
    binary.data = np.ones_like(binary.data)
    counts = np.asarray((binary.T @ binary).toarray(), dtype=np.float32)
    norms = np.sqrt(np.diag(counts)).astype(np.float32)
    counts /= np.outer(norms, norms) + np.float32(shrink) + np.float32(1e-9)
    np.fill_diagonal(counts, 0.0)
    return counts


def keep_top_neighbours(similarity: np.ndarray, neighbours: int) -> np.ndarray:
    """Zero all but the `neighbours` largest entries of every column (the items voting for that column's item)."""
    n = similarity.shape[0]
    if neighbours >= n - 1:
        return similarity.astype(np.float32, copy=False)
    cutoff_rows = np.argpartition(-similarity, neighbours - 1, axis=0)[:neighbours]
    kept = np.zeros_like(similarity, dtype=np.float32)
    columns = np.broadcast_to(np.arange(n), cutoff_rows.shape)
    kept[cutoff_rows, columns] = similarity[cutoff_rows, columns]
    return kept


register("knn", ItemKNNAlgorithm)
