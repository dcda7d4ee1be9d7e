"""What a tenant's training starts from and ends with: its parsed export (`Preloaded`), and the serving extras."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from ml_service.config import Settings
from ml_service.data.tenant import TenantData
from ml_service.models.base import TrainedModel
from ml_service.source.base import TenantFiles


@dataclass
class Preloaded:
    """A tenant's parsed export, kept from the quick pass for its full training (saves parsing it twice)."""

    tenant: str
    data: TenantData
    fingerprint: str
    seconds: dict[str, float]


def fingerprint(files: TenantFiles) -> str:
    """SHA-256 over the tenant's three export files (streamed), to tell which data a model was trained on."""
    digest = hashlib.sha256()
    for path in (files.user_interactions, files.user_data, files.item_data):
        digest.update(path.name.encode())
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def finish_model(model: TrainedModel, data: TenantData, settings: Settings, started: float, *, stage: str) -> dict[str, float]:
    """Add what serving needs besides scores (similar items, content vectors) and the run's facts; the seconds."""
    if data.n_items > 0 and len(data.interactions) > 0:
        from ml_service.models.similarity import POPULARITY_EXPONENT, similar_item_vectors

        # Similar items come from co-occurrence for every algorithm: it measured better than any model's own
        # item vectors (benchmarks/results/similar_items.json).
        from ml_service.training.extras import cached

        model.similarity_vectors, model.item_warm = cached(
            data, f"similar:{settings.seed}", lambda: similar_item_vectors(data, data.interactions, seed=settings.seed))
        model.info["similar_items"] = {"method": "co-occurrence", "popularity_exponent": POPULARITY_EXPONENT}
    if model.content_vectors is None and data.n_items > 0:
        from ml_service.data.features import item_content_vectors

        from ml_service.training.extras import cached

        model.content_vectors = cached(data, "content", lambda: item_content_vectors(data))  # for items nobody took
    seconds = {"train": round(time.monotonic() - started, 3)}
    sizes = {"users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}
    # stage: "quick" (anytime's first popular model) or "final"; the protocol tells whether two metrics compare.
    model.info.update({"tenant": data.tenant, "sizes": sizes, "load_report": data.report.as_dict(), "stage": stage,
                       "validation_protocol": settings.validation_protocol})
    model.info.setdefault("seconds", {}).update(seconds)
    return seconds
