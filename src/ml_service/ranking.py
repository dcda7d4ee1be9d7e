"""Top-k ranking as /user-items and /similar-items serve it; the offline evaluation uses the same code."""

from __future__ import annotations

import numpy as np

from ml_service.data.tenant import TYPE_FAMILY
from ml_service.models.base import TrainedModel, score_users

EXCLUDE = "exclude"
DEMOTE = "demote"
REFERENCE_DEMOTION = 0.5  # spec §6.6: positives drop by 0.5 x (max - min of unseen scores)


def top_k(scores: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Indices from `candidates` with the n highest scores, best first (argpartition, then a sort of n)."""
    if n <= 0 or candidates.size == 0:
        return candidates[:0]
    values = scores[candidates]
    if n < candidates.size:
        part = np.argpartition(-values, n - 1)[:n]
    else:
        part = np.arange(candidates.size)
    order = part[np.lexsort((candidates[part], -values[part]))]  # ties: lower index first, stable
    return candidates[order]


def rank_user(
    model: TrainedModel,
    user: int | None,
    item_type: int,
    n: int,
    *,
    seen_policy: str = EXCLUDE,
    type_items: np.ndarray | None = None,
) -> list[tuple[int, float]]:
    """The n best items of `item_type` for a user index (None = unknown user: popularity), with scores.

    `type_items` may pass the precomputed indices of items of that type (the index caches them).
    """
    if type_items is None:
        type_items = np.flatnonzero(np.asarray(model.item_types) == item_type)
    if user is None or (model.user_cold is not None and model.user_cold[user]):
        scores = _popularity(model)
    else:
        scores = score_users(model, np.array([user]))[0]
    candidates = type_items
    if user is not None and model.positives is not None:
        row = model.positives[user]
        seen = row.indices[row.data > 0] if hasattr(row, "indices") else np.flatnonzero(row)
        if seen.size:
            is_seen = np.isin(candidates, seen)
            if seen_policy == EXCLUDE:
                candidates = candidates[~is_seen]
            elif is_seen.any() and (~is_seen).any():
                unseen_scores = scores[candidates[~is_seen]]
                scores = scores.copy()
                scores[candidates[is_seen]] -= REFERENCE_DEMOTION * float(unseen_scores.max() - unseen_scores.min())
    chosen = top_k(scores, candidates, n)
    return [(int(i), float(scores[i])) for i in chosen]


def rank_similar(model: TrainedModel, item: int, n: int, *, family_items: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The n items of the target's family most similar to it (cosine), never the target itself (D2).

    Warm targets use the model's item vectors; targets without interactions use content vectors when present.
    """
    family = TYPE_FAMILY[int(model.item_types[item])]
    if family_items is None:
        fam = np.asarray([TYPE_FAMILY[t] for t in range(len(TYPE_FAMILY))])[np.asarray(model.item_types)]
        family_items = np.flatnonzero(fam == family)
    vectors = model.similarity_vectors
    warm = model.item_warm is None or bool(model.item_warm[item])
    if (not warm or vectors is None) and model.content_vectors is not None:
        vectors = model.content_vectors
    if vectors is None:
        return []
    candidates = family_items[family_items != item]
    scores = np.zeros(model.n_items, dtype=np.float32)
    scores[candidates] = np.asarray(vectors[candidates], dtype=np.float32) @ np.asarray(vectors[item], dtype=np.float32)
    chosen = top_k(scores, candidates, n)
    return [(int(i), float(scores[i])) for i in chosen]


def _popularity(model: TrainedModel) -> np.ndarray:
    if model.popularity is not None:
        return np.asarray(model.popularity, dtype=np.float32)
    return np.zeros(model.n_items, dtype=np.float32)
