"""What a tenant's training starts from and ends with: its parsed export (`Preloaded`), and the serving extras."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from ml_service.data.tenant import TenantData
from ml_service.models.base import TrainedModel
from ml_service.models.extras import serving_extras
from ml_service.source.base import TenantFiles
from ml_service.training.context import TrainContext
from ml_service.training.extras import cached


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


def finish_model(model: TrainedModel, ctx: TrainContext, started: float, *, stage: str) -> dict[str, float]:
    """Build what serves beside the final fit's scoring part (models/extras.py), and record the run's facts; the
    seconds. The parts that depend on the data only are computed once per parsed export (training/extras.py) and
    shared by the quick, interim and final versions."""
    data = ctx.data
    model.extras = serving_extras(
        data, model.scoring, seed=ctx.seed, features=ctx.features, recent_per_learner=ctx.recent_per_learner,
        info=model.info, base=model.extras, memo=lambda name, compute: cached(data, name, compute),
    )
    seconds = {"train": round(time.monotonic() - started, 3)}
    sizes = {"users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}
    # stage: "quick" (anytime's first popular model) or "final"; the protocol tells whether two metrics compare.
    model.info.update({"tenant": data.tenant, "sizes": sizes, "load_report": data.report.as_dict(), "stage": stage,
                       "validation_protocol": ctx.protocol})
    model.info.setdefault("seconds", {}).update(seconds)
    return seconds
