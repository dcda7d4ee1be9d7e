"""RecBole's "general" evaluation protocol: value filter, iterative k-core, per-user ratio split, full-ranking metrics.

Reproduces RecBole 1.2.1 (recbole/data/dataset/dataset.py, recbole/evaluator/metrics.py):

- filtering: interactions outside `val_interval` (here rating >= 3) are dropped first; then users and items
  with fewer than k interactions are dropped *repeatedly* until none is left (RecBole's
  `_filter_by_inter_num` loops `while True` until no user and no item is banned);
- split `RS: [0.8, 0.1, 0.1]`, order `RO`, `group_by: user`: all interactions are shuffled once, grouped by
  user (keeping the shuffled order), and each user's list is cut by `_calcu_split_ids` (valid and test get
  floor(ratio x n) each, bumped to 1 when the ratio gives a fraction below 1 and the train part keeps > 1);
- full ranking: every item is a candidate except the user's *history*, which at test time is train + valid
  (RecBole's sampler accumulates used ids over the phases) and at validation time is train;
- Recall@k = hits in the top k / number of the user's truth items; NDCG@k = DCG@k / IDCG where the ideal DCG
  puts min(|truth|, k) hits at the top; both averaged over the users with at least one truth item.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp


def value_filter(rating: np.ndarray, lowest: float = 3.0) -> np.ndarray:
    """Mask of the interactions kept by `val_interval: rating: "[lowest,inf)"`."""
    return np.asarray(rating, dtype=np.float64) >= lowest


def k_core(user: np.ndarray, item: np.ndarray, min_user: int = 10, min_item: int = 10) -> np.ndarray:
    """Mask of the interactions left after RecBole's iterative user/item interaction-count filter."""
    keep = np.ones(user.size, dtype=bool)
    n_users = int(user.max()) + 1 if user.size else 0
    n_items = int(item.max()) + 1 if item.size else 0
    while True:
        user_count = np.bincount(user[keep], minlength=n_users)
        item_count = np.bincount(item[keep], minlength=n_items)
        banned = keep & ((user_count[user] < min_user) | (item_count[item] < min_item))
        if not banned.any():
            return keep
        keep &= ~banned


def split_ids(total: int, ratios: tuple[float, ...]) -> list[int]:
    """RecBole's `_calcu_split_ids`: the cut positions of a list of `total` entries by `ratios`."""
    norm = sum(ratios)
    ratios = tuple(r / norm for r in ratios)
    counts = [int(r * total) for r in ratios]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return [int(x) for x in np.cumsum(counts)[:-1]]


def ratio_split(
    user: np.ndarray, ratios: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 2020
) -> np.ndarray:
    """Part (0 = train, 1 = valid, 2 = test) of every interaction: one global shuffle, then per-user cuts."""
    order = np.random.default_rng(seed).permutation(user.size)
    # Group by user, keeping the shuffled order within a user (RecBole's _grouped_index is order-preserving).
    grouped = order[np.argsort(user[order], kind="stable")]
    users = user[grouped]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if grouped.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], grouped.size]
    part = np.zeros(user.size, dtype=np.int8)
    for start, end in zip(starts, ends):
        cuts = [0, *split_ids(int(end - start), ratios), int(end - start)]
        for index in range(len(ratios)):
            part[grouped[start + cuts[index]:start + cuts[index + 1]]] = index
    return part


def ranking_metrics(
    scores: np.ndarray, history: sp.csr_matrix, truth: sp.csr_matrix, users: np.ndarray, k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (NDCG@k, Recall@k) of `scores` (rows = `users`), history masked, against `truth` (all users' rows).

    Ties are broken by the lower item index (a stable sort of -score).
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    hist = history[users].tocoo()
    scores[hist.row, hist.col] = -np.inf
    n_items = scores.shape[1]
    width = min(k, n_items)
    if width < n_items:
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        kth = np.take_along_axis(scores, top, axis=1).min(axis=1)
        # entries tied with the k-th score outside the partition: resolve by index like a stable full sort
        candidates = [np.flatnonzero(row >= cut) for row, cut in zip(scores, kth)]
        top = np.stack([c[np.lexsort((c, -row[c]))][:width] for c, row in zip(candidates, scores)])
    else:
        top = np.argsort(-scores, axis=1, kind="stable")
    true = truth[users]
    hits = np.zeros(top.shape, dtype=bool)
    for row in range(users.size):
        start, end = true.indptr[row], true.indptr[row + 1]
        hits[row] = np.isin(top[row], true.indices[start:end])
    hits &= np.isfinite(np.take_along_axis(scores, top, axis=1))  # masked items are never hits
    n_true = np.diff(true.indptr)
    discounts = 1.0 / np.log2(np.arange(2, width + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_true, width) - 1]
    return dcg / ideal, hits.sum(axis=1) / n_true


def evaluate_scores(
    score_rows: Callable[[np.ndarray], np.ndarray],
    history: sp.csr_matrix,
    truth: sp.csr_matrix,
    k: int = 10,
    batch: int = 1024,
) -> dict[str, float]:
    """Mean NDCG@k and Recall@k over the users with truth items; `score_rows(users)` gives their score rows."""
    truth = truth.tocsr()
    history = history.tocsr()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    ndcg, recall = [], []
    for start in range(0, users.size, batch):
        chunk = users[start:start + batch]
        n, r = ranking_metrics(score_rows(chunk), history, truth, chunk, k)
        ndcg.append(n)
        recall.append(r)
    if not ndcg:
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, "users": 0}
    return {
        f"ndcg@{k}": float(np.concatenate(ndcg).mean()),
        f"recall@{k}": float(np.concatenate(recall).mean()),
        "users": int(users.size),
    }
