"""The one offline evaluation (precision/recall/NDCG/hit-rate@k, coverage, AUC) used by tuning, benchmarks and metadata.

Lists come from ml_service.ranking.rank, the function /user-items calls with one learner, here called with a
batch of learners scored once: per item type, scored by the model (popularity for cold users), the user's training
positives excluded (or demoted), top k (score descending, ties by lowest item index, also at the cut-off).
Relevant items are the user's held-out positives (rating 1) of that type; relevance is binary. Metrics are
computed on the (pairs x k) lists with array operations, summed in the same order as a per-pair loop, so the
numbers are bit-for-bit those of the straightforward per-user evaluation.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from ml_service.data.tenant import TenantData
from ml_service.models.base import TrainedModel
from ml_service.ranking import EXCLUDE, check_seen_policy, rank, score, type_candidates
from ml_service.stage_clock import timed
from ml_service.training.split import Split

RANK_METRICS = ("precision", "recall", "ndcg", "hit_rate")
# Default batch: a float32 score matrix of 16 MB; a type's block of it, the partitioned copy and the boolean
# masks take up to 2.5 times that again, so a batch peaks around 56 MB whatever the catalogue size.
SCORE_BATCH_BYTES = 16 * 2**20


@timed("evaluate")  # the pipeline's seconds per stage (stage_clock.py)
def evaluate(
    model: TrainedModel,
    data: TenantData,
    split: Split,
    k: int = 10,
    *,
    seen_policy: str = EXCLUDE,
    auc: bool = True,
    batch_size: int | None = None,
    pairs_out: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Held-out metrics of `model` fitted on `split.train`, for every user with held-out positives.

    Returns {"k", "users", "held_out", "precision@k", "recall@k", "ndcg@k", "hit_rate@k", "coverage@k", "auc",
    "per_type": {type name: {"users", "held_out", "precision@k", ...}}}. A (user, type) pair is evaluated when the
    user has held-out positives of that type; per-type values are means over those pairs, the overall values
    are the per-type values weighted by held-out counts. Precision divides by k even when fewer than k items
    were left to recommend. Coverage = distinct recommended items / all items.
    AUC (reference continuity): per user, the probability that a held-out positive outscores an item the user
    has no training interaction with (ties count half), averaged over users; it ignores item types.
    `batch_size` = users scored at a time (default: as many as fit a 16 MB score matrix).
    `pairs_out`, when given, receives the NDCG@k of every (user, type) pair, in an order that depends on the split
    only (so two models' arrays pair up): training/search.py bootstraps over them to estimate the noise.
    """
    check_seen_policy(seen_policy)
    n_items = model.n_items
    item_types = np.asarray(model.item_types)
    train_any = data.interaction_matrix(split.train).tocsr() if auc else None
    held = split.test.subset(split.test.rating == 1)
    test_matrix = data.interaction_matrix(held).tocsr()
    test_users = np.flatnonzero(np.bincount(held.user, minlength=data.n_users))  # sorted, as np.unique
    type_items = {int(t): type_candidates(model, int(t)) for t in np.unique(item_types)}
    if batch_size is None:
        batch_size = max(1, SCORE_BATCH_BYTES // (4 * max(n_items, 1)))
    positive = split.train.rating == 1
    train_positives = _BatchEntries(
        split.train.user[positive], split.train.item[positive], test_users, data.n_users, batch_size
    )
    metrics = _RankMetrics(k, n_items, model.type_names, keep_pairs=pairs_out is not None)
    auc_values: list[float] = []

    for start in range(0, test_users.size, batch_size):
        batch = test_users[start:start + batch_size]
        scored = score(model, batch, seen=train_positives.batch(start // batch_size))
        relevant_rows, relevant_items = _entries(test_matrix, batch)
        if auc:  # before ranking, which may mark the seen entries of the scores
            assert train_any is not None
            auc_values.extend(_batch_auc(scored.scores, batch, relevant_rows, relevant_items, train_any))
        is_relevant = np.zeros((batch.size, n_items), dtype=bool)
        is_relevant[relevant_rows, relevant_items] = True
        n_types = len(model.type_names)
        n_relevant = np.bincount(
            relevant_rows * n_types + item_types[relevant_items], minlength=batch.size * n_types
        ).reshape(batch.size, n_types)
        for t in np.flatnonzero(n_relevant.any(axis=0)):
            rows = np.flatnonzero(n_relevant[:, t])
            lists = rank(model, scored, int(t), k, seen_policy, rows=rows, type_items=type_items[int(t)])
            listed = lists.listed()
            hits = listed & is_relevant[rows[:, None], lists.items]
            metrics.add(int(t), hits, n_relevant[rows, t], lists.items[listed])

    per_type, overall, total_held = metrics.summary()
    if pairs_out is not None:
        pairs_out.extend(metrics.pair_ndcg)
    result: dict[str, Any] = {"k": k, "users": int(test_users.size), "held_out": total_held}
    result |= _named(overall, k)
    result[f"coverage@{k}"] = metrics.coverage()
    if auc:
        result["auc"] = float(np.mean(auc_values)) if auc_values else 0.0
    result["per_type"] = per_type
    return result


@timed("evaluate")
def ndcg_at_k(model: TrainedModel, data: TenantData, split: Split, k: int = 10) -> float:
    """Aggregated NDCG@k of evaluate(), without AUC: the tuning and early-stopping objective."""
    return float(evaluate(model, data, split, k, auc=False)[f"ndcg@{k}"])


class _RankMetrics:
    """Sums of precision, recall, NDCG and hit-rate over (user, type) pairs, per type, plus recommended items."""

    def __init__(self, k: int, n_items: int, type_names: tuple[str, ...], keep_pairs: bool = False) -> None:
        self.k = k
        self.keep_pairs = keep_pairs
        self.pair_ndcg: list[np.ndarray] = []
        self.type_names = type_names
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))
        self.ideal = np.array([float(self.discounts[:m].sum()) for m in range(k + 1)])
        self.sums: dict[int, np.ndarray] = {}
        self.pairs: dict[int, int] = {}
        self.held_out: dict[int, int] = {}
        self.recommended = np.zeros(n_items, dtype=bool)

    def add(self, item_type: int, hits: np.ndarray, n_relevant: np.ndarray, recommended: np.ndarray) -> None:
        """Pairs of one type: hits (pairs, <=k) bool by rank, each pair's relevant count, the items listed."""
        self.recommended[recommended] = True
        n_hits = hits.sum(axis=1)
        values = np.column_stack([
            n_hits / self.k,
            n_hits / n_relevant,
            self._dcg(hits) / self.ideal[np.minimum(self.k, n_relevant)],
            (n_hits > 0).astype(np.float64),
        ])
        if self.keep_pairs:
            self.pair_ndcg.append(values[:, 2].copy())
        previous = self.sums.get(item_type, np.zeros(4))
        # cumsum adds pair after pair, the order of a per-pair loop (np.sum would pair them up differently).
        self.sums[item_type] = np.cumsum(np.vstack([previous, values]), axis=0)[-1]
        self.pairs[item_type] = self.pairs.get(item_type, 0) + int(hits.shape[0])
        self.held_out[item_type] = self.held_out.get(item_type, 0) + int(n_relevant.sum())

    def _dcg(self, hits: np.ndarray) -> np.ndarray:
        """DCG of each row, summed exactly as discounts[hits].sum() per list: once per distinct hit pattern."""
        if hits.shape[0] == 0:
            return np.zeros(0)
        width = hits.shape[1]
        if width < 63:  # rows as bit codes: np.unique on integers is 10x faster than on rows
            codes, inverse = np.unique(hits.astype(np.int64) @ (1 << np.arange(width)), return_inverse=True)
            per_pattern = np.array([_pattern_dcg(int(code), self.k) for code in codes])
        else:
            patterns, inverse = np.unique(hits, axis=0, return_inverse=True)
            per_pattern = np.array([float(self.discounts[:width][pattern].sum()) for pattern in patterns])
        return per_pattern[inverse.reshape(-1)]

    def summary(self) -> tuple[dict[str, dict[str, float | int]], np.ndarray, int]:
        """(per-type metrics, overall metrics weighted by held-out counts, total held-out positives)."""
        per_type: dict[str, dict[str, float | int]] = {}
        overall = np.zeros(4)
        total_held = sum(self.held_out.values())
        for t in sorted(self.sums):
            means = self.sums[t] / self.pairs[t]
            per_type[self.type_names[t]] = {"users": self.pairs[t], "held_out": self.held_out[t]} | _named(means, self.k)
            overall += means * self.held_out[t] / total_held
        return per_type, overall, int(total_held)

    def coverage(self) -> float:
        n_items = self.recommended.size
        return float(self.recommended.sum() / n_items) if n_items else 0.0


@functools.lru_cache(maxsize=65536)
def _pattern_dcg(code: int, k: int) -> float:
    """DCG@k of the hit pattern `code` (bit r set = a hit at rank r), summed as discounts[hits].sum() is."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    return float(discounts[[rank for rank in range(code.bit_length()) if code >> rank & 1]].sum())


class _BatchEntries:
    """(row in batch, item) entries of the evaluated users, split by batch in one pass: no sorted CSR needed."""

    def __init__(
        self, users: np.ndarray, items: np.ndarray, batch_users: np.ndarray, n_users: int, batch_size: int
    ) -> None:
        position = np.full(n_users, -1, dtype=np.int64)
        position[batch_users] = np.arange(batch_users.size)
        positions = position[users]
        known = positions >= 0
        positions, items = positions[known], items[known].astype(np.int64)
        batches = positions // batch_size
        n_batches = -(-batch_users.size // batch_size)
        if n_batches > 1:
            # A stable sort of small integers is a radix sort: O(entries).
            order = np.argsort(batches.astype(np.int16 if n_batches < 2**15 else np.int64), kind="stable")
            positions, items, batches = positions[order], items[order], batches[order]
        self.bounds = np.searchsorted(batches, np.arange(n_batches + 1))
        self.rows = positions - batches * batch_size
        self.items = items

    def batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, items) of batch `index`; rows are not sorted."""
        start, end = self.bounds[index], self.bounds[index + 1]
        return self.rows[start:end], self.items[start:end]


def _batch_auc(
    scores: np.ndarray, batch: np.ndarray, relevant_rows: np.ndarray, relevant_items: np.ndarray,
    train_any: sp.csr_matrix,
) -> list[float]:
    """_auc of every row of the batch that has one, in row order, without sorting any row.

    AUC = (negatives scored below a positive + half those tied with it, summed over positives) / (pos x neg),
    the Mann-Whitney count behind _auc's rank sum. Each positive is compared with its row's negatives (the user's
    items with neither a training interaction nor a held-out positive), which costs positives x items compares
    instead of a sort per row. The counts are integers, so the values equal _auc's exactly. Rows with
    non-finite scores of their own go through _auc.
    """
    n_rows, n_items = scores.shape
    train_rows, train_items = _entries(train_any, batch)
    is_train = np.zeros((n_rows, n_items), dtype=bool)
    is_train[train_rows, train_items] = True
    positive = ~is_train[relevant_rows, relevant_items]
    pos_rows, pos_items = relevant_rows[positive], relevant_items[positive]
    negatives = scores.copy()
    negatives[is_train] = np.nan  # NaN compares False both ways: not a negative
    negatives[pos_rows, pos_items] = np.nan
    n_pos = np.bincount(pos_rows, minlength=n_rows)
    n_neg = n_items - is_train.sum(axis=1) - n_pos
    twice_wins = np.zeros(n_rows, dtype=np.int64)  # 2 x (below + half tied): an integer
    slot = np.arange(pos_rows.size) - np.searchsorted(pos_rows, pos_rows)  # the positive's place in its row
    for q in range(int(slot.max()) + 1 if slot.size else 0):
        at = slot == q
        rows, positive_scores = pos_rows[at], scores[pos_rows[at], pos_items[at]][:, None]
        block = negatives[rows]
        twice_wins[rows] += 2 * (block < positive_scores).sum(axis=1) + (block == positive_scores).sum(axis=1)
    finite = np.isfinite(scores).all(axis=1)
    relevant_starts = np.searchsorted(relevant_rows, np.arange(n_rows + 1))
    values: list[float] = []
    for row in range(n_rows):
        if not finite[row]:
            relevant = relevant_items[relevant_starts[row]:relevant_starts[row + 1]]
            value = _auc(scores[row], relevant, _row(train_any, int(batch[row])), n_items)
            if value is not None:
                values.append(value)
        elif n_pos[row] > 0 and n_neg[row] > 0:
            pos, neg = int(n_pos[row]), int(n_neg[row])
            values.append(float(twice_wins[row]) / 2 / (pos * neg))
    return values


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


def _entries(matrix: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in `users`, item) of the positive entries of those users' rows, rows ascending."""
    starts, ends = matrix.indptr[users], matrix.indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(users.size), lengths)
    # Entry j of a row sits at its row start + (j - the row's first position in the output).
    offsets = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    keep = matrix.data[offsets] > 0
    return rows[keep], matrix.indices[offsets][keep].astype(np.int64)


def _row(matrix: sp.csr_matrix, user: int) -> np.ndarray:
    start, end = matrix.indptr[user], matrix.indptr[user + 1]
    return matrix.indices[start:end][matrix.data[start:end] > 0]


def _named(values: np.ndarray, k: int) -> dict[str, float]:
    return {f"{name}@{k}": float(v) for name, v in zip(RANK_METRICS, values)}
