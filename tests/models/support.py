"""Fit an algorithm and wrap its scoring part as the model tests rank and evaluate (as tune() and the pipeline do)."""

from __future__ import annotations

import dataclasses

from typing import Any, Mapping

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import Algorithm, FitContext, TrainedModel, assemble
from ml_service.models.extras import serving_extras, validation_extras


def fitted(
    algorithm: Algorithm, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext,
    *, serving: bool = True,
) -> TrainedModel:
    """algorithm.fit(...) with the extras of a fit on `train` (`serving`: the similar-item and content vectors too)."""
    part = algorithm.fit(data, train, params, ctx)
    extras = validation_extras(data, train, part)
    if serving:
        train_data = dataclasses.replace(data, interactions=train)
        extras = serving_extras(train_data, part, seed=ctx.seed, features=ctx.features, base=extras)
    return assemble(data, algorithm.name, part, extras)
