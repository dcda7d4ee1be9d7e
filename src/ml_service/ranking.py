"""The one ranking of items: /user-items and /similar-items call it for one learner or item, evaluation and batch for many.

It decides which items may be listed, applies the seen-item policy and takes the top k with its tie rule. Where to change what: an item filter (e.g. items Totara marks invisible) goes into `listable`; the seen-item
policy is `_select_one` (one row) and `_mark_seen` (many rows); the tie rule (score descending, then the lower item
index, also at the cut-off) is `_top_positions` (one row) and `_top_k_rows` (many rows), kept equal by tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import TYPE_FAMILY
from ml_service.models.base import FACTORS, TrainedModel, score_users

EXCLUDE = "exclude"
DEMOTE = "demote"
SEEN_POLICIES = (EXCLUDE, DEMOTE)
REFERENCE_DEMOTION = 0.5  # spec §6.6: /user-items positives drop by 0.5 x (max - min of unseen scores)
LEGACY_BATCH_DEMOTION = 0.3  # spec §9.5 and §11 item 14: the i2u file's seen penalty, 0.3 x the same range
SCORE_CELLS = 4_000_000  # scores per block when ranking many similar-item targets (16 MB of float32)


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


def check_seen_policy(seen_policy: str) -> None:
    if seen_policy not in SEEN_POLICIES:
        raise ValueError(f"unknown seen_policy {seen_policy!r}; expected {EXCLUDE!r} or {DEMOTE!r}")


# ------------------------------------------------------------------------------------------------ candidates
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
    """Indices of the listable items of a type family (D2: articles and microlearning are one), ascending."""
    types = np.asarray(model.item_types).astype(np.int64, copy=False)
    of_family = np.asarray(TYPE_FAMILY, dtype=np.int64)[types] == family if types.size else np.zeros(0, bool)
    allowed = listable(model, exclude)
    return np.flatnonzero(of_family if allowed is None else of_family & allowed)


# ------------------------------------------------------------------------------------------------ users -> items
def score(model: TrainedModel, users: Sequence[int] | np.ndarray, seen: tuple[np.ndarray, np.ndarray] | None = None) -> Scored:
    """Scores of `users` (-1 = unknown) over every item: the model's, popularity for cold and unknown users.

    `seen` = (row, item) entries of the users' seen items; default: their positives in the model.
    """
    users = np.asarray(users, dtype=np.int64)
    known = users >= 0
    scores = score_users(model, np.where(known, users, 0))
    fallback = ~known
    if model.user_cold is not None:
        fallback |= known & np.asarray(model.user_cold)[np.where(known, users, 0)]
    if fallback.any():
        scores[fallback] = _popularity(model)
    if seen is None:
        seen = _seen_entries(model.positives, users)
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
    `rows` picks some of its rows). Seen items (the model's positives, or the block's) are left out (EXCLUDE) or
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
    if user is None or (model.user_cold is not None and model.user_cold[user]):
        values = type_popularity if type_popularity is not None else _popularity(model)[candidates]
    elif type_factors is not None and model.kind == FACTORS:
        values = _score_type_items(model, user, candidates, type_factors, type_biases)
    else:
        values = score_users(model, np.array([user]))[0][candidates]
    is_seen = None
    if user is not None and model.positives is not None:
        seen = _positive_items(model.positives, user)
        if seen.size:
            seen_mask = np.zeros(model.n_items, dtype=bool)
            seen_mask[seen] = True
            is_seen = seen_mask[candidates]
    return _select_one(values, candidates, is_seen, n, seen_policy, demotion)


def _select_one(
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
    chosen = _top_positions(values, candidates, n)
    return candidates[chosen], values[chosen]


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
    _mark_seen(block, seen_r, seen_c, seen_policy, demotion)
    scored.seen_marked |= in_place
    positions, values, counts = _top_k_rows(block, k)
    items = candidates[positions] if candidates.size else positions
    redo = np.flatnonzero(~finite)
    if redo.size:  # -inf, +inf or NaN in the model's own scores: the row-by-row rule handles them
        order = np.argsort(seen_r, kind="stable")
        starts = np.searchsorted(seen_r[order], np.arange(rows.size + 1))
        for i in redo.tolist():
            is_seen = np.zeros(candidates.size, dtype=bool)
            is_seen[seen_c[order[starts[i]:starts[i + 1]]]] = True
            raw = scored.scores[rows[i], candidates]
            chosen, chosen_values = _select_one(raw, candidates, is_seen, k, seen_policy, demotion)
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


def _mark_seen(block: np.ndarray, seen_r: np.ndarray, seen_c: np.ndarray, seen_policy: str, demotion: float) -> None:
    """The seen policy on many rows in place: seen entries to -inf (EXCLUDE, not candidates any more) or demoted
    exactly as _select_one demotes one row (the drop rounded to the scores' dtype, as a Python float would be)."""
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


def _score_type_items(
    model: TrainedModel, user: int, type_items: np.ndarray, type_factors: np.ndarray, type_biases: np.ndarray | None = None
) -> np.ndarray:
    """score_users for one user at `type_items` (position by position), from precomputed factor rows."""
    assert model.user_factors is not None
    part = type_factors @ np.asarray(model.user_factors[user], dtype=np.float32)
    if model.item_biases is not None:
        part += type_biases if type_biases is not None else np.asarray(model.item_biases, dtype=np.float32)[type_items]
    if model.user_biases is not None:
        part += np.float32(model.user_biases[user])
    return part


# ------------------------------------------------------------------------------------------------ items -> items
def similar(
    model: TrainedModel,
    items: Sequence[int] | np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    family_items: np.ndarray | None = None,
    family_vectors: np.ndarray | None = None,
    family_content: np.ndarray | None = None,
) -> Lists:
    """For each target, the k listable items of its family most similar to it (cosine), never itself (D2).

    Warm targets use the model's similarity vectors; targets without interactions use content vectors when
    present; a target without vectors gets an empty list. For one target the family_* arguments may pass what the
    serving index caches: family_items = family_candidates(model, its family) and their rows of
    similarity_vectors / content_vectors as contiguous float32.
    """
    if len(items) == 1:
        item = int(items[0])
        chosen, values = _similar_one(model, item, k, exclude, family_items, family_vectors, family_content)
        return Lists(chosen[None, :], values[None, :], (chosen.size,))
    if family_items is not None:
        raise ValueError("precomputed family blocks are for one target")
    items = np.asarray(items, dtype=np.int64)
    width = max(0, k)
    out = Lists(np.zeros((items.size, width), np.int64), np.zeros((items.size, width), np.float32), np.zeros(items.size, np.int64))
    families = np.asarray(TYPE_FAMILY, dtype=np.int64)[np.asarray(model.item_types)[items]] if items.size else items
    content = _uses_content(model, items)
    for family in np.unique(families).tolist():
        candidates = family_candidates(model, family, exclude)
        for use_content, vectors in ((False, model.similarity_vectors), (True, model.content_vectors)):
            group = np.flatnonzero((families == family) & (content == use_content))
            if vectors is None or group.size == 0 or candidates.size == 0:
                continue
            candidate_vectors = np.asarray(vectors[candidates], dtype=np.float32)
            block = max(1, SCORE_CELLS // candidates.size)
            for start in range(0, group.size, block):
                rows = group[start:start + block]
                _similar_rows(out, rows, items[rows], candidates, np.asarray(vectors[items[rows]], np.float32) @ candidate_vectors.T, k)
    return out


def rank_similar(model: TrainedModel, item: int, n: int, **cached: np.ndarray | None) -> list[tuple[int, float]]:
    """similar() for one target as (item index, cosine) pairs; `cached` = similar()'s family_* arguments."""
    return similar(model, [item], n, **cached).pairs(0)  # type: ignore[arg-type]


def _similar_one(
    model: TrainedModel,
    item: int,
    n: int,
    exclude: np.ndarray | None,
    family_items: np.ndarray | None,
    family_vectors: np.ndarray | None,
    family_content: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One target's similar items: (items, cosines)."""
    if family_items is None:
        family_items = family_candidates(model, TYPE_FAMILY[int(model.item_types[item])], exclude)
    elif exclude is not None:
        raise ValueError("pass either exclude or precomputed family_items, not both")
    if _uses_content(model, item):
        vectors, block = model.content_vectors, family_content
    else:
        vectors, block = model.similarity_vectors, family_vectors
    if vectors is None:
        return family_items[:0], np.zeros(0, np.float32)
    if block is None:
        block = np.asarray(vectors[family_items], dtype=np.float32)
    # The whole family block, the target's own row included, then the target dropped: one product either way,
    # so the precomputed block and this gather give bit-identical scores.
    keep = family_items != item
    values = (block @ np.asarray(vectors[item], dtype=np.float32))[keep]
    return _select_one(values, family_items[keep], None, n, EXCLUDE, 0.0)


def _similar_rows(out: Lists, rows: np.ndarray, targets: np.ndarray, candidates: np.ndarray, scores: np.ndarray, k: int) -> None:
    """Fill `out` at `rows` with the top k of `scores` (targets x candidates), each target's own column left out."""
    at = np.searchsorted(candidates, targets)
    own = (at < candidates.size) & (candidates[np.minimum(at, candidates.size - 1)] == targets)
    finite = np.isfinite(scores).all(axis=1)
    scores[np.flatnonzero(own), at[own]] = -np.inf  # never the target
    positions, values, counts = _top_k_rows(scores, k)
    for i in np.flatnonzero(~finite).tolist():  # non-finite vectors: the row-by-row rule
        keep = candidates != targets[i]
        raw = scores[i, keep]
        chosen, chosen_values = _select_one(raw, candidates[keep], None, k, EXCLUDE, 0.0)
        width = chosen.size
        positions[i, :width], values[i, :width], counts[i] = np.searchsorted(candidates, chosen), chosen_values, width
    width = positions.shape[1]
    out.items[rows, :width] = candidates[positions]
    out.scores[rows, :width] = values
    out.counts[rows] = counts  # type: ignore[index]


def _uses_content(model: TrainedModel, items: int | np.ndarray) -> bool | np.ndarray:
    """Per target (bool, or one for all): rank by content vectors (cold items, or no similarity vectors) rather
    than by similarity vectors."""
    if model.content_vectors is None:
        return False
    if model.similarity_vectors is None or model.item_warm is None:
        return model.similarity_vectors is None
    return ~np.asarray(model.item_warm, dtype=bool)[items]


# ------------------------------------------------------------------------------------------------ top k
def top_k(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Indices from `candidates` with the n highest scores, best first (argpartition, then a sort of n)."""
    if n <= 0 or candidates.size == 0:
        return candidates[:0]
    return candidates[_top_positions(scores[candidates], candidates, n)]


def _top_positions(values: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
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


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_top_positions of every row of a score matrix whose -inf entries are not candidates, columns ascending
    with the candidates: (positions, values, counts), the first two (rows, min(k, columns)).

    Per row the best columns, score descending then column ascending (ties at the cut-off included, as
    _top_positions resolves them); a row lists fewer than k when fewer than k of its scores are above -inf.
    Rows holding -inf or NaN model scores (or +inf) are the caller's to redo with _select_one.
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
        keep = _lowest_tied(rows, values, counts, floor, k)
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


def _lowest_tied(rows: np.ndarray, values: np.ndarray, counts: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """Which row-major entries (scores >= their row's k-th score) _top_k_rows keeps: in a row with more than k,
    all the scores above the k-th and, of those equal to it, the lowest columns up to k in all."""
    at_cutoff = (counts > k)[rows] & (values == kth[rows])
    running = np.concatenate(([0], np.cumsum(at_cutoff)))  # running[j] = tied entries before entry j
    row_starts = np.cumsum(counts) - counts
    tie_rank = running[1:] - running[row_starts][rows]  # 1, 2, ... along a row's tied entries
    above = counts - np.bincount(rows[at_cutoff], minlength=counts.size)
    return ~at_cutoff | (tie_rank <= (k - above)[rows])


# ------------------------------------------------------------------------------------------------ model reads
def _seen_entries(positives: object, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in users, item) of the users' positive entries (unknown users, -1, have none)."""
    if positives is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
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


def _popularity(model: TrainedModel) -> np.ndarray:
    if model.popularity is not None:
        return np.asarray(model.popularity, dtype=np.float32)
    return np.zeros(model.n_items, dtype=np.float32)
