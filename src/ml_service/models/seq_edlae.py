"""EDLAE plus a timeline EASE: co-occurrence within a window of each learner's consecutive interactions."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.ease import MAX_ITEMS, DenseItemItemLimit
from ml_service.models.edlae import CANDIDATES as EDLAE_CANDIDATES
from ml_service.models.edlae import edlae_weights, fit_cost as edlae_fit_cost
from ml_service.models.fields import history_matrix
from ml_service.models.parts import ItemItemModel
from ml_service.models.registry import register

# (window, timeline λ scale x mean interactions per item, weight of the timeline part); the first is the default.
# MovieLens-1M under RecBole's protocol, validation NDCG@10: EDLAE alone 0.2359; plus the timeline part with
# window 20, λ ≈ 2.3 x per item, weight 0.5: 0.2389 (λ ≈ 0.9 x per item: 0.2382; window 5: lower).
CANDIDATES: tuple[tuple[int, float, float], ...] = ((20, 2.3, 0.5), (20, 0.9, 0.8))
SCALE_SAMPLE_USERS = 2000
# Half-lives (in interactions, counted back from each learner's newest) of the weights of the learner's own
# history when scoring, tried on the same weights when validating: the first that validates best is kept.
# MovieLens-1M, each learner's newest 20 % held out: ∞ 0.129, 40 0.142, 15 0.167 NDCG@10; with a random
# hold-out ∞ wins (0.303 against 0.262 at 100), so validation decides.
HALF_LIVES: tuple[float, ...] = (float("inf"), 30.0, 10.0)
MIN_HISTORY_WEIGHT = 1e-3  # old interactions still count a little and never underflow to an absent entry


def estimated_fit_seconds(n_users: int, n_items: int, nnz: int, window: int = 20) -> float:
    """Seconds on one core of one fit: EDLAE's (Gram + inversion) twice, plus the windowed pair counting."""
    return 2 * edlae_fit_cost(n_users, n_items, nnz)[0] + nnz * window / 2e7


def fit_cost(n_users: int, n_items: int, nnz: int) -> tuple[float, int]:
    """(seconds on one core, peak bytes) of one fit: two dense items² float64 pairs are alive at the peak."""
    return estimated_fit_seconds(n_users, n_items, nnz), 3 * 8 * n_items**2 + 24 * nnz


class SeqEDLAEAlgorithm(DenseItemItemLimit):
    """W = B_edlae / s_edlae + w · B_timeline / s_timeline, served as one item-item model on the binary history.

    B_timeline is EASE on a Gram whose off-diagonal counts how often two items fall within `window` positions
    of each other in a learner's time-ordered interactions (diagonal: item counts + λ). Items taken up together
    (a course bundle, a session) get weight the whole-history Gram spreads thin. s = the mean over learners of
    the spread of their scores, so `weight` is on one scale. Without varying timestamps it is EDLAE.
    """

    name = "seq_edlae"
    bytes_per_pair = 3 * 8

    def __init__(self, max_items: int = MAX_ITEMS):
        super().__init__(max_items)

    def cost(self, data: TenantData) -> tuple[float, int]:
        """fit_cost of this tenant: `auto` skips the algorithm when one fit would not end within its budget."""
        return fit_cost(data.n_users, data.n_items, len(data.interactions))

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        per_item = len(data.interactions) / max(data.n_items, 1)
        scale, dropout, gamma = EDLAE_CANDIDATES[0]
        return [
            {"lambda": round(max(scale * per_item, 1.0), 3), "dropout": dropout, "popularity_exponent": gamma,
             "window": window, "timeline_lambda": round(max(seq_scale * per_item, 1.0), 3), "weight": weight}
            for window, seq_scale, weight in CANDIDATES
        ]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> ItemItemModel:
        if data.n_items > self.max_items:
            raise self._too_large(data.n_items)
        chosen = {
            "lambda": float(params.get("lambda", 100.0)),
            "dropout": float(params.get("dropout", EDLAE_CANDIDATES[0][1])),
            "popularity_exponent": float(params.get("popularity_exponent", EDLAE_CANDIDATES[0][2])),
            "window": int(params.get("window", CANDIDATES[0][0])),
            "timeline_lambda": float(params.get("timeline_lambda", 100.0)),
            "weight": float(params.get("weight", CANDIDATES[0][2])),
            "half_life": float(params.get("half_life", float("inf"))),
        }
        if chosen["window"] < 1:
            raise ValueError(f"seq_edlae window must be at least 1, got {chosen['window']}")
        history = history_matrix(data, train, "binary")
        with threadpool_limits(limits=max(ctx.threads, 1)):
            item_item = edlae_weights(history, chosen["lambda"], chosen["dropout"], chosen["popularity_exponent"])
            item_item /= mean_spread(history, item_item, ctx.seed)
            timed = len(train) > 0 and np.ptp(train.timestamp) > 0
            if timed and chosen["weight"] > 0:
                timeline = timeline_weights(train, data.n_items, chosen["window"], chosen["timeline_lambda"])
                item_item += chosen["weight"] / mean_spread(history, timeline, ctx.seed) * timeline
        def build(half_life: float) -> ItemItemModel:
            return ItemItemModel(
                item_item=item_item,
                history=recency_weighted(data, train, half_life) if timed else history,
                user_cold=np.diff(history.indptr) == 0,
                params=chosen | {"half_life": half_life},
                info={"timeline": bool(timed)},
            )

        if ctx.evaluate is None or not timed or "half_life" in params:
            return build(chosen["half_life"] if timed else float("inf"))
        tried = {life: float(ctx.evaluate(build(life))) for life in HALF_LIVES}
        part = build(max(tried, key=lambda life: (tried[life], -HALF_LIVES.index(life))))
        part.info["validation_by_half_life"] = {str(life): round(score, 6) for life, score in tried.items()}
        return part


def recency_weighted(data: TenantData, train: Interactions, half_life: float) -> sp.csr_matrix:
    """The binary history with each interaction weighted 0.5^(its rank from the learner's newest / half_life)."""
    users = np.asarray(train.user)
    values = np.ones(len(train), np.float32)
    if np.isfinite(half_life) and len(train):
        order = np.lexsort((-np.asarray(train.item), -np.asarray(train.timestamp), users))
        sorted_users = users[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        values[order] = np.maximum(0.5 ** (rank / half_life), MIN_HISTORY_WEIGHT)
    matrix = sp.csr_matrix((values, (users, train.item)), shape=(data.n_users, data.n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def timeline_gram(train: Interactions, n_items: int, window: int) -> np.ndarray:
    """(n_items, n_items) float64: off-diagonal = pairs within `window` positions of one learner's timeline
    (both directions), diagonal = each item's count."""
    order = np.lexsort((train.item, train.timestamp, train.user))
    users, items = np.asarray(train.user)[order], np.asarray(train.item)[order]
    rows, cols = [], []
    for offset in range(1, window + 1):
        same = users[offset:] == users[:-offset]
        rows.append(items[:-offset][same])
        cols.append(items[offset:][same])
    first, second = np.concatenate(rows), np.concatenate(cols)
    pairs = sp.coo_matrix((np.ones(first.size), (first, second)), shape=(n_items, n_items)).tocsr()
    gram = (pairs + pairs.T).toarray()
    gram[np.diag_indices_from(gram)] = np.bincount(items, minlength=n_items)
    return gram


def timeline_weights(train: Interactions, n_items: int, window: int, lam: float) -> np.ndarray:
    """EASE's closed form on timeline_gram: float32 weights with zero diagonal."""
    gram = timeline_gram(train, n_items, window)
    gram[np.diag_indices_from(gram)] += lam
    precision = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def mean_spread(history: sp.csr_matrix, weights: np.ndarray, seed: int) -> float:
    """Mean standard deviation of warm learners' scores (a seeded sample of at most SCALE_SAMPLE_USERS); 1 if none."""
    warm = np.flatnonzero(np.diff(history.indptr) > 0)
    if warm.size > SCALE_SAMPLE_USERS:
        warm = np.sort(np.random.default_rng(seed).choice(warm, SCALE_SAMPLE_USERS, replace=False))
    if warm.size == 0:
        return 1.0
    spread = float(np.asarray(history[warm] @ weights).std(axis=1).mean())
    return spread if spread > 1e-12 else 1.0


register("seq_edlae", SeqEDLAEAlgorithm)
