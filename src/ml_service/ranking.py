"""Top-k ranking as /user-items and /similar-items serve it; the offline evaluation uses the same code."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import TYPE_FAMILY
from ml_service.models.base import FACTORS, TrainedModel, score_users

EXCLUDE = "exclude"
DEMOTE = "demote"
REFERENCE_DEMOTION = 0.5  # spec §6.6: positives drop by 0.5 x (max - min of unseen scores)


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


def rank_user(
    model: TrainedModel,
    user: int | None,
    item_type: int,
    n: int,
    *,
    seen_policy: str = EXCLUDE,
    type_items: np.ndarray | None = None,
    type_factors: np.ndarray | None = None,
    type_biases: np.ndarray | None = None,
    type_popularity: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The n best items of `item_type` for a user index (None = unknown user: popularity), with scores.

    `type_items` may pass the precomputed indices of items of that type (the index caches them), and
    `type_factors` the contiguous rows item_factors[type_items] of a factors model: then only the items of
    the type are scored (the same dot products as score_users, 5x less work with five types).
    `type_biases` (item_biases[type_items] as float32) and `type_popularity` (the popularity scores of
    type_items as float32) are further precomputed slices; none of them changes the answer.
    """
    if type_items is None:
        type_items = np.flatnonzero(np.asarray(model.item_types) == item_type)
    # `values` holds the scores of type_items, position by position.
    if user is None or (model.user_cold is not None and model.user_cold[user]):
        values = type_popularity if type_popularity is not None else _popularity(model)[type_items]
    elif type_factors is not None and model.kind == FACTORS:
        values = _score_type_items(model, user, type_items, type_factors, type_biases)
    else:
        values = score_users(model, np.array([user]))[0][type_items]
    candidates = type_items
    if user is not None and model.positives is not None:
        seen = _positive_items(model.positives, user)
        if seen.size:
            seen_mask = np.zeros(model.n_items, dtype=bool)
            seen_mask[seen] = True
            is_seen = seen_mask[candidates]
            if seen_policy == EXCLUDE:
                if is_seen.any():
                    keep = ~is_seen
                    candidates, values = candidates[keep], values[keep]
            elif is_seen.any() and (~is_seen).any():
                unseen_values = values[~is_seen]
                values = values.copy()
                values[is_seen] -= REFERENCE_DEMOTION * float(unseen_values.max() - unseen_values.min())
    if n <= 0 or candidates.size == 0:
        return []
    chosen = _top_positions(values, candidates, n)
    return list(zip(candidates[chosen].tolist(), values[chosen].tolist()))


def rank_similar(
    model: TrainedModel,
    item: int,
    n: int,
    *,
    family_items: np.ndarray | None = None,
    family_vectors: np.ndarray | None = None,
    family_content: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The n items of the target's family most similar to it (cosine), never the target itself (D2).

    Warm targets use the model's item vectors; targets without interactions use content vectors when present.
    `family_vectors` / `family_content` may pass the contiguous float32 rows similarity_vectors[family_items] /
    content_vectors[family_items] (the index caches them): scoring is then one product on that block.
    """
    family = TYPE_FAMILY[int(model.item_types[item])]
    if family_items is None:
        fam = np.asarray([TYPE_FAMILY[t] for t in range(len(TYPE_FAMILY))])[np.asarray(model.item_types)]
        family_items = np.flatnonzero(fam == family)
    vectors, block = model.similarity_vectors, family_vectors
    warm = model.item_warm is None or bool(model.item_warm[item])
    if (not warm or vectors is None) and model.content_vectors is not None:
        vectors, block = model.content_vectors, family_content
    if vectors is None:
        return []
    if block is None:
        block = np.asarray(vectors[family_items], dtype=np.float32)
    # The whole family block, the target's own row included, then the target dropped: one product either way,
    # so the precomputed block and this gather give bit-identical scores (as the batch i2i file computes them).
    keep = family_items != item
    values = (block @ np.asarray(vectors[item], dtype=np.float32))[keep]
    candidates = family_items[keep]
    if n <= 0 or candidates.size == 0:
        return []
    chosen = _top_positions(values, candidates, n)
    return list(zip(candidates[chosen].tolist(), values[chosen].tolist()))


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
