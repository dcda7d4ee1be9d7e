"""What serves beside a scoring part, built the same way for every algorithm: seen items, popularity, item vectors."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.parts import ScoringPart, ServingExtras


def validation_extras(data: TenantData, train: Interactions, part: ScoringPart | None = None) -> ServingExtras:
    """The cheap extras evaluation needs (seen items, popularity for cold users, warm items) of a fit on `train`.

    Popularity is the popular algorithm's default on `train`, or the half-life `part` was fitted with (popular).
    """
    from ml_service.models.popular import DEFAULT_HALF_LIFE_DAYS, popularity_scores, positives_matrix, warm_items

    half_life = float((part.params if part is not None else {}).get("half_life_days", DEFAULT_HALF_LIFE_DAYS))
    return ServingExtras(
        positives=positives_matrix(data, train),
        popularity=np.asarray(popularity_scores(train, data.n_items, half_life), dtype=np.float32),
        item_warm=warm_items(data, train),
    )


def serving_extras(
    data: TenantData,
    part: ScoringPart,
    *,
    seed: int,
    features: Any = None,
    recent_per_learner: int = 0,
    info: dict[str, Any] | None = None,
    base: ServingExtras | None = None,
    memo: Callable[[str, Callable[[], Any]], Any] | None = None,
) -> ServingExtras:
    """Everything served beside `part` fitted on all of data.interactions, built once after the final fit.

    Similar items come from co-occurrence for every algorithm: it measured better than any model's own item
    vectors (benchmarks/results/similar_items.json). Content vectors serve similar items for items nobody took.
    `recent_per_learner` dated interactions per learner are kept for the dashboard (data/recent.py).
    `features` is the tuning's feature cache (content vectors are reused from it); `info` receives how similar
    items are ranked; `base` = validation_extras(data, data.interactions, part) when the caller has them.
    `memo(name, compute)` may return an earlier result for the parts that depend on the data only (similar-item
    and content vectors, recent interactions); by default each is computed.
    """
    from ml_service.data.recent import recent_interactions
    from ml_service.models.fields import content_vectors

    remember = memo or (lambda _name, compute: compute())
    base = base or validation_extras(data, data.interactions, part)
    similarity = None
    warm = base.item_warm
    if data.n_items > 0 and len(data.interactions) > 0:
        from ml_service.models.similarity import POPULARITY_EXPONENT, similar_item_vectors

        similarity, warm = remember(f"similar:{seed}", lambda: similar_item_vectors(data, data.interactions, seed=seed))
        if info is not None:
            info["similar_items"] = {"method": "co-occurrence", "popularity_exponent": POPULARITY_EXPONENT}
    content = remember("content", lambda: content_vectors(data, features)) if data.n_items > 0 else None
    recent = remember(f"recent:{recent_per_learner}", lambda: recent_interactions(data, recent_per_learner))
    return ServingExtras(base.positives, base.popularity, warm, similarity, content, recent)
