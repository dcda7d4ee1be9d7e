"""Items -> items: /similar-items ranks one target, the batch's i2i file every target at once."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ml_service.models.base import TrainedModel
from ml_service.ranking.select import EXCLUDE, Lists, family_candidates, model_families, select_one, top_k_rows

SCORE_CELLS = 4_000_000  # scores per block when ranking many similar-item targets (16 MB of float32)


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
    families = model_families(model)[np.asarray(model.item_types)[items]] if items.size else items
    content = _uses_content(model, items)
    for family in np.unique(families).tolist():
        candidates = family_candidates(model, family, exclude)
        for use_content, vectors in ((False, model.extras.similarity_vectors), (True, model.extras.content_vectors)):
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
        family_items = family_candidates(model, int(model_families(model)[int(model.item_types[item])]), exclude)
    elif exclude is not None:
        raise ValueError("pass either exclude or precomputed family_items, not both")
    if _uses_content(model, item):
        vectors, block = model.extras.content_vectors, family_content
    else:
        vectors, block = model.extras.similarity_vectors, family_vectors
    if vectors is None:
        return family_items[:0], np.zeros(0, np.float32)
    if block is None:
        block = np.asarray(vectors[family_items], dtype=np.float32)
    # The whole family block, the target's own row included, then the target dropped: one product either way,
    # so the precomputed block and this gather give bit-identical scores.
    keep = family_items != item
    values = (block @ np.asarray(vectors[item], dtype=np.float32))[keep]
    return select_one(values, family_items[keep], None, n, EXCLUDE, 0.0)


def _similar_rows(out: Lists, rows: np.ndarray, targets: np.ndarray, candidates: np.ndarray, scores: np.ndarray, k: int) -> None:
    """Fill `out` at `rows` with the top k of `scores` (targets x candidates), each target's own column left out."""
    at = np.searchsorted(candidates, targets)
    own = (at < candidates.size) & (candidates[np.minimum(at, candidates.size - 1)] == targets)
    finite = np.isfinite(scores).all(axis=1)
    scores[np.flatnonzero(own), at[own]] = -np.inf  # never the target
    positions, values, counts = top_k_rows(scores, k)
    for i in np.flatnonzero(~finite).tolist():  # non-finite vectors: the row-by-row rule
        keep = candidates != targets[i]
        raw = scores[i, keep]
        chosen, chosen_values = select_one(raw, candidates[keep], None, k, EXCLUDE, 0.0)
        width = chosen.size
        positions[i, :width], values[i, :width], counts[i] = np.searchsorted(candidates, chosen), chosen_values, width
    width = positions.shape[1]
    out.items[rows, :width] = candidates[positions]
    out.scores[rows, :width] = values
    out.counts[rows] = counts  # type: ignore[index]


def _uses_content(model: TrainedModel, items: int | np.ndarray) -> bool | np.ndarray:
    """Per target (bool, or one for all): rank by content vectors (cold items, or no similarity vectors) rather
    than by similarity vectors."""
    extras = model.extras
    if extras.content_vectors is None:
        return False
    if extras.similarity_vectors is None:
        return True
    return ~np.asarray(extras.item_warm, dtype=bool)[items]
