"""EDLAE plus a timeline EASE (co-occurrence within a window of each learner's consecutive interactions) and
GF-CF's graph filters (a normalised co-occurrence and its low-rank "ideal" low-pass part)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
from threadpoolctl import threadpool_limits

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.ease import MAX_ITEMS, DenseItemItemLimit
from ml_service.models.edlae import CANDIDATES as EDLAE_CANDIDATES
from ml_service.models.edlae import edlae_weights, edlae_weights_from_gram, fit_cost as edlae_fit_cost
from ml_service.models.fields import history_matrix
from ml_service.models.parts import ItemItemModel
from ml_service.models.recency import has_time, with_recency
from ml_service.models.registry import register

# (window, timeline λ scale x mean interactions per item, weight of the timeline part); the first is the default.
# MovieLens-1M under RecBole's protocol, validation NDCG@10: EDLAE alone 0.2359; plus the timeline part with
# window 20, λ ≈ 2.3 x per item, weight 0.5: 0.2389 (λ ≈ 0.9 x per item: 0.2382; window 5: lower).
CANDIDATES: tuple[tuple[int, float, float], ...] = ((20, 2.3, 0.5), (20, 0.9, 0.8))
# EDLAE's dropout here, GF-CF's rank and the weights of its linear and ideal filters (0 = off), with the timeline.
# MovieLens-1M, RecBole protocol, validation NDCG@10 (benchmarks/recbole_explore.py, results/recbole_explore.json):
# EDLAE p 0.5 + timeline (20, 0.9, 0.8) 0.2388; p 0.67: 0.2397; + GF-CF rank 64, weights 0.3 / 0.3: 0.2415
# (rank 32: 0.2403, 128 and 256: ~0.241; GF-CF as one part (linear + 0.3 ideal) at weight 0.4-0.7: 0.2406-0.2411);
# with them the second timeline candidate validates best (first: 0.2397), test 0.2958 against 0.2935. auto's own
# hold-out of the same train part ties the two (0.2626 / 0.2620) and picks the first: test 0.2939.
DROPOUT = 0.67
GF_RANK, GF_LINEAR, GF_IDEAL = 64, 0.3, 0.3
SCALE_SAMPLE_USERS = 2000
GF_DENSE_ITEMS = 500  # up to this many items GF-CF's singular vectors come from a dense eigendecomposition


def estimated_fit_seconds(n_users: int, n_items: int, nnz: int, window: int = 20, rank: int = GF_RANK) -> float:
    """Seconds on one core of one fit: EDLAE's (Gram + inversion) twice, the windowed pair counting, and GF-CF's
    filters (one more Gram product, a few Lanczos passes over the interactions, the items² x rank low-pass product)."""
    gram = nnz**2 / max(n_users, 1) / 1e8
    return 2 * edlae_fit_cost(n_users, n_items, nnz)[0] + nnz * window / 2e7 + gram + 2 * n_items**2 * rank / 5e9


def fit_cost(n_users: int, n_items: int, nnz: int) -> tuple[float, int]:
    """(seconds on one core, peak bytes) of one fit: two dense items² float64 pairs are alive at the peak (GF-CF's
    filters come later, as float32: with the sum that is three items² float32 arrays)."""
    return estimated_fit_seconds(n_users, n_items, nnz), 3 * 8 * n_items**2 + 24 * nnz


class SeqEDLAEAlgorithm(DenseItemItemLimit):
    """W = B_edlae / s_edlae + w · B_timeline / s_timeline (+ GF-CF's filters): one item-item model on the binary
    history.

    B_timeline is EASE on a Gram whose off-diagonal counts how often two items fall within `window` positions
    of each other in a learner's time-ordered interactions (diagonal: item counts + λ). Items taken up together
    (a course bundle, a session) get weight the whole-history Gram spreads thin. s = the mean over learners of
    the spread of their scores, so `weight` is on one scale. With timestamps GF-CF's filters are added on the same
    scale: gf_linear · L / s_L + gf_ideal · I / s_I (graph_filters), which smooth over the co-occurrence graph
    where the two EASE parts are sharp. Without varying timestamps it is EDLAE.
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
        scale, _, gamma = EDLAE_CANDIDATES[0]
        return [
            {"lambda": round(max(scale * per_item, 1.0), 3), "dropout": DROPOUT, "popularity_exponent": gamma,
             "window": window, "timeline_lambda": round(max(seq_scale * per_item, 1.0), 3), "weight": weight,
             "gf_rank": GF_RANK, "gf_linear": GF_LINEAR, "gf_ideal": GF_IDEAL}
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
            # absent = off, so models stored before the graph filters existed keep their meaning
            "gf_rank": int(params.get("gf_rank", 0)),
            "gf_linear": float(params.get("gf_linear", 0.0)),
            "gf_ideal": float(params.get("gf_ideal", 0.0)),
        }
        if chosen["window"] < 1:
            raise ValueError(f"seq_edlae window must be at least 1, got {chosen['window']}")
        if chosen["gf_rank"] < 0 or chosen["gf_linear"] < 0 or chosen["gf_ideal"] < 0:
            raise ValueError("seq_edlae gf_rank, gf_linear and gf_ideal must not be negative")
        history = history_matrix(data, train, "binary")
        with threadpool_limits(limits=max(ctx.threads, 1)):
            item_item = edlae_weights(history, chosen["lambda"], chosen["dropout"], chosen["popularity_exponent"])
            item_item /= mean_spread(history, item_item, ctx.seed)
            timed = has_time(train)
            if timed and chosen["weight"] > 0:
                timeline = timeline_weights(train, data.n_items, chosen["window"], chosen["timeline_lambda"])
                item_item += chosen["weight"] / mean_spread(history, timeline, ctx.seed) * timeline
                del timeline
            # Only with the timeline: without varying timestamps seq_edlae stays EDLAE (`edlae` is the same model)
            if timed and (chosen["gf_linear"] > 0 or (chosen["gf_ideal"] > 0 and chosen["gf_rank"] > 0)):
                add_graph_filters(item_item, history, chosen["gf_rank"], chosen["gf_linear"], chosen["gf_ideal"],
                                  ctx.seed)
        part = ItemItemModel(
            item_item=item_item,
            history=history,
            user_cold=np.diff(history.indptr) == 0,
            params=chosen,
            info={"timeline": bool(timed)},
        )
        return with_recency(part, data, train, params, ctx)


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
    return edlae_weights_from_gram(timeline_gram(train, n_items, window), lam, dropout=0.0, gamma=0.0)


def graph_filters(history: sp.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """GF-CF's filters (Shen et al. 2021) as float32 item-item matrices: the linear R̃ᵀR̃, R̃ = D_U^-½ X D_I^-½,
    and the ideal low-pass D_I^-½ V Vᵀ D_I^½ with V the top `rank` right singular vectors of R̃ (None when rank is 0).

    V comes from ARPACK's Lanczos iteration on R̃ᵀR̃ as products with the sparse R̃ (seeded start vector); small
    catalogues use the dense eigendecomposition. The Lanczos vectors matched the dense ones (smallest principal
    cosine 1 - 1e-15 on MovieLens-1M, rank 64) in 0.5 s against 3.2 s; a randomised subspace iteration with 6
    power steps did not (0.17).
    """
    n_items = history.shape[1]
    per_user = np.asarray(history.sum(axis=1)).ravel()
    per_item = np.asarray(history.sum(axis=0)).ravel()
    user_scale = np.where(per_user > 0, per_user, 1.0) ** -0.5
    item_scale = np.where(per_item > 0, per_item, 1.0) ** -0.5
    normalised = sp.csr_matrix(sp.diags(user_scale) @ history @ sp.diags(item_scale), dtype=np.float64)
    linear = np.asarray((normalised.T @ normalised).toarray(), dtype=np.float32)
    rank = min(rank, n_items)
    if rank == 0:
        return linear, None
    if n_items <= GF_DENSE_ITEMS or rank >= n_items - 1:
        _, vectors = scipy.linalg.eigh(linear.astype(np.float64), subset_by_index=(n_items - rank, n_items - 1))
    else:
        gram = scipy.sparse.linalg.LinearOperator(
            (n_items, n_items), matvec=lambda v: normalised.T @ (normalised @ v), dtype=np.float64
        )
        start = np.random.default_rng(seed).standard_normal(n_items)
        try:
            _, vectors = scipy.sparse.linalg.eigsh(gram, k=rank, which="LA", v0=start, tol=1e-6)
        except scipy.sparse.linalg.ArpackNoConvergence:
            _, vectors = scipy.linalg.eigh(linear.astype(np.float64), subset_by_index=(n_items - rank, n_items - 1))
    ideal = ((item_scale[:, None] * vectors) @ (vectors.T / item_scale[None, :])).astype(np.float32)
    return linear, ideal


def add_graph_filters(item_item: np.ndarray, history: sp.csr_matrix, rank: int, linear_weight: float,
                      ideal_weight: float, seed: int) -> None:
    """item_item += linear_weight · L / s_L + ideal_weight · I / s_I (graph_filters; s = mean_spread), in place."""
    linear, ideal = graph_filters(history, rank if ideal_weight > 0 else 0, seed)
    if linear_weight > 0:
        item_item += np.float32(linear_weight / mean_spread(history, linear, seed)) * linear
    del linear
    if ideal is not None:
        item_item += np.float32(ideal_weight / mean_spread(history, ideal, seed)) * ideal


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
