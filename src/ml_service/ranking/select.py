"""The ranking rules, on one row or many: which items may be listed, the seen-item policy, the top k and its tie rule."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ml_service.data.tenant import type_families
from ml_service.models.base import TrainedModel

EXCLUDE = "exclude"
DEMOTE = "demote"
SEEN_POLICIES = (EXCLUDE, DEMOTE)
REFERENCE_DEMOTION = 0.5  # spec §6.6: /user-items positives drop by 0.5 x (max - min of unseen scores)
LEGACY_BATCH_DEMOTION = 0.3  # spec §9.5 and §11 item 14: the i2u file's seen penalty, 0.3 x the same range


class Lists(NamedTuple):
    """Ranked lists, one per row: items and their scores (rows, width), best first; row r holds counts[r] entries."""

    items: np.ndarray  # int64 item indices; unused slots hold a valid index, see listed()
    scores: np.ndarray
    counts: np.ndarray | tuple[int, ...]  # (rows,)

    def pairs(self, row: int) -> list[tuple[int, float]]:
        """(item index, score) of one row's list, as plain Python values."""
        items, scores, n = self.items[row], self.scores[row], self.counts[row]
        if n < items.size:
            items, scores = items[:n], scores[:n]
        return list(zip(items.tolist(), scores.tolist()))

    def listed(self) -> np.ndarray:
        """bool (rows, width): which slots are part of their row's list (always a prefix of the row)."""
        return np.arange(self.items.shape[1]) < np.asarray(self.counts)[:, None]


def check_seen_policy(seen_policy: str) -> None:
    """Raise ValueError naming the allowed values unless `seen_policy` is one of SEEN_POLICIES."""
    if seen_policy not in SEEN_POLICIES:
        raise ValueError(f"unknown seen_policy {seen_policy!r}; expected {EXCLUDE!r} or {DEMOTE!r}")


def listable(model: TrainedModel, exclude: np.ndarray | None = None) -> np.ndarray | None:
    """bool (n_items,) of the items that any list may show, or None when all may: the one place for an item filter.

    `exclude` (bool per item) marks items a caller leaves out (the batch: ids Totara's importer cannot split).
    """
    return None if exclude is None else ~np.asarray(exclude, dtype=bool)


def type_candidates(model: TrainedModel, item_type: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the listable items of `item_type`, ascending (the serving index caches them per type)."""
    of_type = np.asarray(model.item_types) == item_type
    allowed = listable(model, exclude)
    return np.flatnonzero(of_type if allowed is None else of_type & allowed)


def family_candidates(model: TrainedModel, family: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the listable items of a type family (D2: articles and microlearning are one; every newer
    type of the model's type_names is its own), ascending."""
    types = np.asarray(model.item_types).astype(np.int64, copy=False)
    of_family = model_families(model)[types] == family if types.size else np.zeros(0, bool)
    allowed = listable(model, exclude)
    return np.flatnonzero(of_family if allowed is None else of_family & allowed)


def model_families(model: TrainedModel) -> np.ndarray:
    """int64 family code of each of the model's type codes (data.tenant.type_families of its type names)."""
    return np.asarray(type_families(model.type_names), dtype=np.int64)


def select_one(
    values: np.ndarray, candidates: np.ndarray, is_seen: np.ndarray | None, n: int, seen_policy: str, demotion: float
) -> tuple[np.ndarray, np.ndarray]:
    """The seen policy and top-n on one row: `values` are the scores of `candidates`, `is_seen` flags them.

    Seen candidates are left out (EXCLUDE) or demoted (DEMOTE, when some candidates are unseen).
    """
    if is_seen is not None and is_seen.any():
        if seen_policy == EXCLUDE:
            keep = ~is_seen
            candidates, values = candidates[keep], values[keep]
        elif (~is_seen).any():
            unseen_values = values[~is_seen]
            values = values.copy()
            values[is_seen] -= demotion * float(unseen_values.max() - unseen_values.min())
    if n <= 0 or candidates.size == 0:
        return candidates[:0], values[:0]
    chosen = top_positions(values, candidates, n)
    return candidates[chosen], values[chosen]


def mark_seen(block: np.ndarray, seen_r: np.ndarray, seen_c: np.ndarray, seen_policy: str, demotion: float) -> None:
    """The seen policy on many rows in place: seen entries to -inf (EXCLUDE, not candidates any more) or demoted
    exactly as select_one demotes one row (the drop rounded to the scores' dtype, as a Python float would be)."""
    if seen_policy == EXCLUDE:
        block[seen_r, seen_c] = -np.inf
        return
    is_seen = np.zeros(block.shape, dtype=bool)
    is_seen[seen_r, seen_c] = True
    demoted = is_seen.any(axis=1) & ~is_seen.all(axis=1)
    if not demoted.any():
        return
    is_seen &= demoted[:, None]
    with np.errstate(invalid="ignore", over="ignore"):  # rows with non-finite scores are redone row by row
        spread = np.where(is_seen, -np.inf, block).max(axis=1) - np.where(is_seen, np.inf, block).min(axis=1)
        drop = (demotion * spread.astype(np.float64)).astype(block.dtype)
        block[is_seen] -= np.broadcast_to(drop[:, None], block.shape)[is_seen]


def top_k(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Indices from `candidates` with the n highest scores, best first (argpartition, then a sort of n)."""
    if n <= 0 or candidates.size == 0:
        return candidates[:0]
    return candidates[top_positions(scores[candidates], candidates, n)]


def top_positions(values: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Positions in `values` (the scores of `candidates`, n >= 1, not empty) of top_k's answer, in its order."""
    if n < candidates.size:
        part = np.argpartition(-values, n - 1)[:n]
        # argpartition picks arbitrarily among scores tied at the cut-off: take every tied one, then the
        # lowest indices, so a list never depends on the partition's internals (batch files agree with the API).
        cutoff = values[part].min()
        if np.count_nonzero(values >= cutoff) > n:
            part = np.flatnonzero(values >= cutoff)
    else:
        part = np.arange(candidates.size)
    return part[np.lexsort((candidates[part], -values[part]))][:n]  # ties: lower index first


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """top_positions of every row of a score matrix whose -inf entries are not candidates, columns ascending
    with the candidates: (positions, values, counts), the first two (rows, min(k, columns)).

    Per row the best columns, score descending then column ascending (ties at the cut-off included, as
    top_positions resolves them); a row lists fewer than k when fewer than k of its scores are above -inf.
    Rows holding -inf or NaN model scores (or +inf) are the caller's to redo with select_one.
    """
    n_rows, n_cols = scores.shape
    width = max(0, min(k, n_cols))
    if width == 0:
        return np.zeros((n_rows, 0), np.int64), np.zeros((n_rows, 0), scores.dtype), np.zeros(n_rows, np.int64)
    if k < n_cols:
        kth = np.partition(scores, n_cols - k, axis=1)[:, n_cols - k]  # values only: 2x faster than argpartition
        # A -inf k-th value means fewer than k items are left: list them all (scores >= the lowest float).
        floor = np.maximum(kth, np.finfo(scores.dtype).min)
        chosen = scores >= floor[:, None]
    else:
        floor = np.full(n_rows, -np.inf, dtype=scores.dtype)
        chosen = scores > -np.inf
    flat = np.flatnonzero(chosen)  # row-major, so columns ascend within a row; 10x faster than a 2-d nonzero
    rows = flat // n_cols
    cols = flat - rows * n_cols
    values = scores[rows, cols]
    counts = np.bincount(rows, minlength=n_rows)
    if (counts > k).any():  # scores tied at the cut-off
        keep = lowest_tied(rows, values, counts, floor, k)
        rows, cols, values = rows[keep], cols[keep], values[keep]
        counts = np.bincount(rows, minlength=n_rows)
    slots = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
    positions = np.zeros((n_rows, width), dtype=np.int64)
    keys = np.full((n_rows, width), np.inf)  # sort key -score; unused slots sort last
    positions[rows, slots] = cols
    keys[rows, slots] = -values.astype(np.float64)
    order = np.lexsort((positions, keys), axis=1)
    positions = np.take_along_axis(positions, order, axis=1)
    return positions, np.take_along_axis(scores, positions, axis=1), counts.astype(np.int64)


def lowest_tied(rows: np.ndarray, values: np.ndarray, counts: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """Which row-major entries (scores >= their row's k-th score) top_k_rows keeps: in a row with more than k,
    all the scores above the k-th and, of those equal to it, the lowest columns up to k in all."""
    at_cutoff = (counts > k)[rows] & (values == kth[rows])
    running = np.concatenate(([0], np.cumsum(at_cutoff)))  # running[j] = tied entries before entry j
    row_starts = np.cumsum(counts) - counts
    tie_rank = running[1:] - running[row_starts][rows]  # 1, 2, ... along a row's tied entries
    above = counts - np.bincount(rows[at_cutoff], minlength=counts.size)
    return ~at_cutoff | (tie_rank <= (k - above)[rows])
