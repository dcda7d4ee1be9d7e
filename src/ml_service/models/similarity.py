"""Item vectors for /similar-items: "learners who took this also took", for every algorithm alike."""

from __future__ import annotations

import numpy as np

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.fields import cooccurrence_embedding

# Ranking score for target i and candidate j: cosine(i, j) x count_j ** exponent (count = learners who took j).
# 0 is pure co-occurrence cosine (related but often obscure items), 1 is raw co-occurrence (popular items for
# every target). Measured by benchmarks/similar_items.py (hit rate of a learner's held-out items among the 10
# items similar to one they liked): 0.25 beats both ends' diversity/accuracy trade-off and the popularity list.
POPULARITY_EXPONENT = 0.25


def similar_item_vectors(
    data: TenantData, interactions: Interactions, *, seed: int, exponent: float = POPULARITY_EXPONENT
) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, item_warm): rows whose dot products rank similar items; zero rows for items nobody took."""
    history = data.interaction_matrix(interactions).tocsr()
    counts = np.bincount(interactions.item, minlength=data.n_items).astype(np.float32)
    warm = counts > 0
    vectors = cooccurrence_embedding(history, warm, seed)
    return (vectors * (counts ** exponent)[:, None]).astype(np.float32), warm
