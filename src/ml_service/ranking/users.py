"""Learners -> items: /user-items ranks one learner, the offline evaluation and the batch's i2u file many at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ml_service.models.base import TrainedModel, score_users
from ml_service.models.parts import FactorModel
from ml_service.ranking.select import (
    DEMOTE, EXCLUDE, REFERENCE_DEMOTION, Lists, check_seen_policy, mark_seen, select_one, top_k_rows, type_candidates,
)


@dataclass
class Scored:
    """Model scores of a block of users over every item (popularity for cold and unknown users) and the (row, item)
    entries of their seen items: scored once, then ranked per item type with rank().

    With EXCLUDE, rank() ranking every row and every item at once marks the seen entries -inf in `scores` instead
    of copying them (use the scores for anything else first); `seen_marked` records it.
    """

    users: np.ndarray
    scores: np.ndarray
    seen_rows: np.ndarray
    seen_items: np.ndarray
    seen_marked: bool = False


def score(model: TrainedModel, users: Sequence[int] | np.ndarray, seen: tuple[np.ndarray, np.ndarray] | None = None) -> Scored:
    """Scores of `users` (-1 = unknown) over every item: the model's, popularity for cold and unknown users.

    `seen` = (row, item) entries of the users' seen items; default: their positives in the model.
    """
    users = np.asarray(users, dtype=np.int64)
    known = users >= 0
    scores = score_users(model, np.where(known, users, 0))
    fallback = ~known | (known & np.asarray(model.scoring.user_cold)[np.where(known, users, 0)])
    if fallback.any():
        scores[fallback] = np.asarray(model.extras.popularity, dtype=np.float32)
    if seen is None:
        seen = _seen_entries(model.extras.positives, users)
    return Scored(users, scores, *seen)


def rank(
    model: TrainedModel,
    users: Sequence[int | None] | np.ndarray | Scored,
    item_type: int,
    k: int,
    seen_policy: str = EXCLUDE,
    *,
    exclude: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    demotion: float = REFERENCE_DEMOTION,
    type_items: np.ndarray | None = None,
    type_factors: np.ndarray | None = None,
    type_biases: np.ndarray | None = None,
    type_popularity: np.ndarray | None = None,
) -> Lists:
    """The k best listable items of `item_type` for each user, best first, ties by the lower item index.

    `users`: user indices (-1 or None = unknown: popularity), or a Scored block (scored once, ranked per type;
    `rows`, ascending and distinct, picks some of its rows). Seen items (the model's positives, or the block's) are left out (EXCLUDE) or
    drop by `demotion` x (max - min) of the unseen candidates' scores (DEMOTE). `exclude` (bool per item) leaves
    items out of every list. For one learner the type_* arguments may pass what the serving index caches:
    type_items = type_candidates(model, item_type), and their rows of item_factors, item_biases and popularity as
    contiguous float32 (only the type's items are then scored); none of them changes the answer.
    """
    check_seen_policy(seen_policy)
    if type_items is None:
        type_items = type_candidates(model, item_type, exclude)
    elif exclude is not None:
        raise ValueError("pass either exclude or precomputed type_items, not both")
    if not isinstance(users, Scored):
        if len(users) == 1:
            user = users[0]
            user = None if user is None or user < 0 else int(user)
            items, values = _rank_one(model, user, type_items, k, seen_policy, demotion, type_factors, type_biases, type_popularity)
            return Lists(items[None, :], values[None, :], (items.size,))
        users = score(model, [-1 if u is None else u for u in users])
    return _rank_block(users, rows, type_items, k, seen_policy, demotion)


def rank_user(
    model: TrainedModel, user: int | None, item_type: int, n: int, *, seen_policy: str = EXCLUDE, **cached: np.ndarray | None
) -> list[tuple[int, float]]:
    """rank() for one learner as (item index, score) pairs; `cached` = rank()'s type_* arguments."""
    return rank(model, [user], item_type, n, seen_policy, **cached).pairs(0)  # type: ignore[arg-type]


def _rank_one(
    model: TrainedModel,
    user: int | None,
    candidates: np.ndarray,
    n: int,
    seen_policy: str,
    demotion: float,
    type_factors: np.ndarray | None,
    type_biases: np.ndarray | None,
    type_popularity: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One learner's list: (items, scores). Scores only `candidates` when their factor rows are given."""
    part = model.scoring
    if user is None or part.user_cold[user]:
        values = type_popularity if type_popularity is not None else np.asarray(model.extras.popularity, np.float32)[candidates]
    elif type_factors is not None and isinstance(part, FactorModel):
        values = _score_type_items(part, user, candidates, type_factors, type_biases)
    else:
        values = score_users(model, np.array([user]))[0][candidates]
    is_seen = None
    if user is not None:
        seen = _positive_items(model.extras.positives, user)
        if seen.size:
            seen_mask = np.zeros(model.n_items, dtype=bool)
            seen_mask[seen] = True
            is_seen = seen_mask[candidates]
    return select_one(values, candidates, is_seen, n, seen_policy, demotion)


def _rank_block(scored: Scored, rows: np.ndarray | None, candidates: np.ndarray, k: int, seen_policy: str, demotion: float) -> Lists:
    """rank() for rows of a Scored block: one partition for all rows; rows with non-finite scores go row by row."""
    n_all, n_items = scored.scores.shape
    whole = (rows is None or rows.size == n_all) and candidates.size == n_items
    in_place = whole and seen_policy == EXCLUDE
    if seen_policy == DEMOTE and scored.seen_marked:
        raise ValueError("this Scored block's seen entries were marked by an EXCLUDE ranking; score it again to demote")
    if rows is None:
        rows = np.arange(n_all)
    if whole:
        block = scored.scores if in_place else scored.scores.copy()
        seen_r, seen_c = scored.seen_rows, scored.seen_items
    else:
        block = scored.scores[np.ix_(rows, candidates)]
        seen_r, seen_c = _block_entries(scored, rows, candidates, n_items)
    finite = np.isfinite(block).all(axis=1)  # (after an earlier in-place EXCLUDE, seen rows are redone: same lists)
    mark_seen(block, seen_r, seen_c, seen_policy, demotion)
    scored.seen_marked |= in_place
    positions, values, counts = top_k_rows(block, k)
    items = candidates[positions] if candidates.size else positions
    redo = np.flatnonzero(~finite)
    if redo.size:  # -inf, +inf or NaN in the model's own scores: the row-by-row rule handles them
        order = np.argsort(seen_r, kind="stable")
        starts = np.searchsorted(seen_r[order], np.arange(rows.size + 1))
        for i in redo.tolist():
            is_seen = np.zeros(candidates.size, dtype=bool)
            is_seen[seen_c[order[starts[i]:starts[i + 1]]]] = True
            raw = scored.scores[rows[i], candidates]
            chosen, chosen_values = select_one(raw, candidates, is_seen, k, seen_policy, demotion)
            items[i, : chosen.size], values[i, : chosen.size], counts[i] = chosen, chosen_values, chosen.size
    return Lists(items, values, counts)


def _block_entries(scored: Scored, rows: np.ndarray, candidates: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The block's seen entries as (position in rows, position in candidates)."""
    row_pos = np.full(scored.scores.shape[0], -1, dtype=np.int64)
    row_pos[rows] = np.arange(rows.size)
    col_pos = np.full(n_items, -1, dtype=np.int64)
    col_pos[candidates] = np.arange(candidates.size)
    r, c = row_pos[scored.seen_rows], col_pos[scored.seen_items]
    keep = (r >= 0) & (c >= 0)
    return r[keep], c[keep]


def _score_type_items(
    part: FactorModel, user: int, type_items: np.ndarray, type_factors: np.ndarray, type_biases: np.ndarray | None = None
) -> np.ndarray:
    """score_users for one user at `type_items` (position by position), from precomputed factor rows."""
    scores = type_factors @ np.asarray(part.user_factors[user], dtype=np.float32)
    scores += type_biases if type_biases is not None else np.asarray(part.item_biases, dtype=np.float32)[type_items]
    scores += np.float32(part.user_biases[user])
    return scores


def _seen_entries(positives: object, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in users, item) of the users' positive entries (unknown users, -1, have none)."""
    known = np.flatnonzero(users >= 0)
    if not (isinstance(positives, sp.csr_matrix) or getattr(positives, "format", None) == "csr"):
        positives = sp.csr_matrix(np.asarray(positives))
    starts, ends = positives.indptr[users[known]], positives.indptr[users[known] + 1]  # type: ignore[attr-defined]
    lengths = ends - starts
    rows = np.repeat(known, lengths)
    offsets = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    keep = np.asarray(positives.data)[offsets] > 0  # type: ignore[attr-defined]
    return rows[keep], np.asarray(positives.indices)[offsets][keep].astype(np.int64)  # type: ignore[attr-defined]


def _positive_items(positives: object, user: int) -> np.ndarray:
    """Item indices of the user's positive entries; reads CSR arrays directly (row slicing costs ~70 us)."""
    if isinstance(positives, sp.csr_matrix) or getattr(positives, "format", None) == "csr":
        start, end = int(positives.indptr[user]), int(positives.indptr[user + 1])  # type: ignore[attr-defined]
        indices = np.asarray(positives.indices[start:end])  # type: ignore[attr-defined]
        return indices[np.asarray(positives.data[start:end]) > 0]  # type: ignore[attr-defined]
    row = positives[user]  # type: ignore[index]
    if hasattr(row, "indices"):
        return row.indices[row.data > 0]
    return np.flatnonzero(np.asarray(row).ravel() > 0)

