"""The one offline evaluation (precision/recall/NDCG/hit-rate@k, coverage, AUC) used by tuning, benchmarks and metadata.

Lists are built as /user-items builds them (ml_service.ranking.rank_user): per item type, scored by the model
(popularity for cold users), the user's training positives excluded (or demoted), top k with the same top_k.
Scoring is batched across users; selection calls the same top_k per row, so the lists are the served ones.
Relevant items are the user's held-out positives (rating 1) of that type; relevance is binary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from ml_service.data.tenant import ITEM_TYPES, TenantData
from ml_service.models.base import TrainedModel, score_users
from ml_service.ranking import DEMOTE, EXCLUDE, REFERENCE_DEMOTION, top_k
from ml_service.training.split import Split

RANK_METRICS = ("precision", "recall", "ndcg", "hit_rate")


def evaluate(
    model: TrainedModel,
    data: TenantData,
    split: Split,
    k: int = 10,
    *,
    seen_policy: str = EXCLUDE,
    auc: bool = True,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Held-out metrics of `model` fitted on `split.train`, for every user with held-out positives.

    Returns {"k", "users", "held_out", "precision@k", "recall@k", "ndcg@k", "hit_rate@k", "coverage@k", "auc",
    "per_type": {type name: {"users", "held_out", "precision@k", ...}}}. A (user, type) pair is evaluated when the
    user has held-out positives of that type; per-type values are means over those pairs, the overall values
    are the per-type values weighted by held-out counts. Coverage = distinct recommended items / all items.
    AUC (reference continuity): per user, the probability that a held-out positive outscores an item the user
    has no training interaction with (ties count half), averaged over users; it ignores item types.
    """
    if seen_policy not in (EXCLUDE, DEMOTE):
        raise ValueError(f"unknown seen_policy {seen_policy!r}; expected {EXCLUDE!r} or {DEMOTE!r}")
    item_types = np.asarray(model.item_types)
    train_positive = data.positive_matrix(split.train).tocsr()
    train_any = data.interaction_matrix(split.train).tocsr()
    held = split.test.subset(split.test.rating == 1)
    test_matrix = data.interaction_matrix(held).tocsr()
    test_users = np.unique(held.user)
    type_items = {int(t): np.flatnonzero(item_types == t) for t in np.unique(item_types)}
    popularity = (
        np.asarray(model.popularity, dtype=np.float32)
        if model.popularity is not None
        else np.zeros(model.n_items, dtype=np.float32)
    )
    discounts = 1.0 / np.log2(np.arange(2, k + 2))

    sums: dict[int, np.ndarray] = {}  # type -> [precision, recall, ndcg, hit] summed over (user, type) pairs
    pairs: dict[int, int] = {}
    held_out: dict[int, int] = {}
    recommended = np.zeros(model.n_items, dtype=bool)
    seen_mask = np.zeros(model.n_items, dtype=bool)
    relevant_mask = np.zeros(model.n_items, dtype=bool)
    auc_values: list[float] = []

    for start in range(0, test_users.size, batch_size):
        batch = test_users[start:start + batch_size]
        scores = score_users(model, batch)
        if model.user_cold is not None:
            cold = np.asarray(model.user_cold)[batch]
            scores[cold] = popularity
        for row, user in enumerate(batch):
            user_scores = scores[row]
            relevant = _row(test_matrix, user)
            seen = _row(train_positive, user)
            # Boolean masks over items, set for this user and reset after: no per-row sorting as np.isin does.
            seen_mask[seen] = True
            relevant_mask[relevant] = True
            relevant_types = item_types[relevant]
            for t in np.flatnonzero(np.bincount(relevant_types, minlength=len(ITEM_TYPES))):
                t = int(t)
                ranked = _rank(user_scores, type_items[t], seen_mask if seen.size else None, k, seen_policy)
                recommended[ranked] = True
                hits = relevant_mask[ranked]
                n_rel = int(np.count_nonzero(relevant_types == t))
                dcg = float(discounts[: ranked.size][hits].sum())
                ideal = float(discounts[: min(k, n_rel)].sum())
                values = np.array([hits.sum() / k, hits.sum() / n_rel, dcg / ideal, float(hits.any())])
                sums[t] = sums.get(t, np.zeros(4)) + values
                pairs[t] = pairs.get(t, 0) + 1
                held_out[t] = held_out.get(t, 0) + n_rel
            seen_mask[seen] = False
            relevant_mask[relevant] = False
            if auc:
                value = _auc(user_scores, relevant, _row(train_any, user), model.n_items)
                if value is not None:
                    auc_values.append(value)

    per_type: dict[str, dict[str, float | int]] = {}
    overall = np.zeros(4)
    total_held = sum(held_out.values())
    for t in sorted(sums):
        means = sums[t] / pairs[t]
        per_type[ITEM_TYPES[t]] = {"users": pairs[t], "held_out": held_out[t]} | _named(means, k)
        overall += means * held_out[t] / total_held
    result: dict[str, Any] = {"k": k, "users": int(test_users.size), "held_out": int(total_held)}
    result |= _named(overall, k)
    result[f"coverage@{k}"] = float(recommended.sum() / model.n_items) if model.n_items else 0.0
    if auc:
        result["auc"] = float(np.mean(auc_values)) if auc_values else 0.0
    result["per_type"] = per_type
    return result


def ndcg_at_k(model: TrainedModel, data: TenantData, split: Split, k: int = 10) -> float:
    """Aggregated NDCG@k of evaluate(), without AUC: the tuning and early-stopping objective."""
    return float(evaluate(model, data, split, k, auc=False)[f"ndcg@{k}"])


def _rank(scores: np.ndarray, candidates: np.ndarray, seen_mask: np.ndarray | None, n: int, seen_policy: str) -> np.ndarray:
    """rank_user's candidate filtering and top_k for one user and type, on precomputed scores."""
    if seen_mask is not None:
        is_seen = seen_mask[candidates]
        if seen_policy == EXCLUDE:
            candidates = candidates[~is_seen]
        elif is_seen.any() and (~is_seen).any():
            unseen_scores = scores[candidates[~is_seen]]
            scores = scores.copy()
            scores[candidates[is_seen]] -= REFERENCE_DEMOTION * float(unseen_scores.max() - unseen_scores.min())
    return top_k(scores, candidates, n)


def _auc(scores: np.ndarray, positives: np.ndarray, train_items: np.ndarray, n_items: int) -> float | None:
    candidate = np.ones(n_items, dtype=bool)
    candidate[train_items] = False
    is_positive = np.zeros(n_items, dtype=bool)
    is_positive[positives] = True
    n_pos = int((candidate & is_positive).sum())
    n_neg = int((candidate & ~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores[candidate])  # average ranks: ties count half
    pos_rank_sum = float(ranks[is_positive[candidate]].sum())
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _row(matrix: sp.csr_matrix, user: int) -> np.ndarray:
    start, end = matrix.indptr[user], matrix.indptr[user + 1]
    return matrix.indices[start:end][matrix.data[start:end] > 0]


def _named(values: np.ndarray, k: int) -> dict[str, float]:
    return {f"{name}@{k}": float(v) for name, v in zip(RANK_METRICS, values)}
