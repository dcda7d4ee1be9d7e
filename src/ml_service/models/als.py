"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) on the `implicit` library; cold users from their features."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from threadpoolctl import threadpool_limits

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.fields import bias_free_factor_model, confidence_matrix
from ml_service.models.parts import FactorModel
from ml_service.models.popular import warm_items
from ml_service.models.registry import register

MAX_ITERATIONS = 30
PATIENCE = 3  # iterations without a better validation score before stopping
# regularization about 10 x alpha measured best on the synthetic tenants; much less overfits
DEFAULTS: dict[str, Any] = {"factors": 64, "regularization": 100.0, "alpha": 10.0, "iterations": 15}


class ALSAlgorithm:
    """Weighted matrix factorisation with confidence 1 + alpha x (rating + 1); no biases (zeros).

    Users without training interactions get factors projected from their side features (ridge regression
    fitted on warm users, models/projection.py) and are served those; users without usable features stay cold.
    """

    name = "als"

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        return [
            dict(DEFAULTS),
            {"factors": 32, "regularization": 20.0, "alpha": 5.0, "iterations": 15},
            {"factors": 128, "regularization": 300.0, "alpha": 40.0, "iterations": 15},
        ]

    def fit(self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext) -> FactorModel:
        from implicit.cpu.als import AlternatingLeastSquares

        factors = int(params.get("factors", DEFAULTS["factors"]))
        regularization = float(params.get("regularization", DEFAULTS["regularization"]))
        alpha = float(params.get("alpha", DEFAULTS["alpha"]))
        max_iterations = int(params.get("iterations", DEFAULTS["iterations"]))
        early_stopping = ctx.evaluate is not None
        if early_stopping:
            max_iterations = max(max_iterations, MAX_ITERATIONS)
        confidence = confidence_matrix(data, train, alpha)
        item_warm = warm_items(data, train)
        user_warm = np.diff(confidence.indptr) > 0

        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        done = 0
        history: list[float] = []
        # implicit runs its own threads: BLAS must stay single-threaded or both oversubscribe the cores.
        with threadpool_limits(limits=1, user_api="blas"):
            als = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                alpha=1.0,  # the confidence matrix already holds 1 + alpha x (rating + 1)
                iterations=1,
                num_threads=max(ctx.threads, 1),
                random_state=ctx.seed,
            )
            while done < max_iterations:
                als.fit(confidence, show_progress=False)
                done += 1
                if not early_stopping:
                    continue
                model = self._model(als.user_factors, als.item_factors, user_warm, item_warm, params, done)
                score = float(ctx.evaluate(model))  # type: ignore[misc]
                history.append(round(score, 6))
                if best is None or score > best[0]:
                    best = (score, done, als.user_factors.copy(), als.item_factors.copy())
                elif done - best[1] >= PATIENCE:
                    break
                if ctx.time_left() <= 0:
                    break
        if best is not None:
            _, epochs, user_factors, item_factors = best
        else:
            epochs, user_factors, item_factors = done, als.user_factors, als.item_factors
        model = self._model(user_factors, item_factors, user_warm, item_warm, params, epochs)
        model.info["validation_by_iteration"] = history
        return with_projected_cold_users(model, data, user_warm)

    def _model(
        self,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_warm: np.ndarray,
        item_warm: np.ndarray,
        params: Mapping[str, Any],
        epochs: int,
    ) -> FactorModel:
        # implicit leaves users and items without data at their random start: bias_free_factor_model zeroes them
        return bias_free_factor_model(
            user_factors,
            item_factors,
            user_warm,
            item_warm,
            {
                "factors": int(params.get("factors", DEFAULTS["factors"])),
                "regularization": float(params.get("regularization", DEFAULTS["regularization"])),
                "alpha": float(params.get("alpha", DEFAULTS["alpha"])),
                "iterations": epochs,
                "epochs": epochs,
            },
        )


def with_projected_cold_users(part: FactorModel, data: TenantData, user_warm: np.ndarray) -> FactorModel:
    """Give users without interactions factors predicted from their side features; they stop being cold."""
    if user_warm.all() or not user_warm.any():
        part.info["projected_cold_users"] = 0
        return part
    from ml_service.data.features import user_side_matrix
    from ml_service.models.projection import project_cold_users

    projected, count = project_cold_users(part, user_side_matrix(data), user_warm)
    projected.info["projected_cold_users"] = count
    return projected


register("als", ALSAlgorithm)
