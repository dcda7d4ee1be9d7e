"""The reference service's training procedure (spec §6.5), reproduced as a baseline for the benchmarks.

LightFM WARP + adadelta, alphas per mode (1e-3 partial/hybrid, 0 mf), default max_sampled; 80/20 random split of
all interactions (seed 10, weights split alike); simulated annealing over integers epochs [1, 20] and components
[25, 100]: random start, 30 iterations, step round(N(0,1) x range x 0.2) per dimension clipped, temperature
5/(i+1), accept if better or with probability exp(-delta/T); objective = mean per-user test AUC excluding train
interactions (LightFM's auc_score); final fit on all given interactions with the last best (epochs, components).
Differences, on purpose: the annealing is seeded (the reference is not) so benchmark runs repeat, and the
features are this project's build_features (same columns as the reference's, minus its `internal_id` defect).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM
from lightfm.evaluation import auc_score

from ml_service.data.features import build_features
from ml_service.data.tenant import TenantData
from ml_service.models.base import FitContext, TrainedModel, assemble
from ml_service.models.extras import validation_extras
from ml_service.models.lightfm_modes import LightFMAlgorithm

EPOCH_RANGE = (1, 20)
COMPONENT_RANGE = (25, 100)
ITERATIONS = 30
SPLIT_SEED = 10


@dataclass
class ReferenceSearch:
    """What the annealing saw: the reference's lists (start and each new best) and the fit count."""

    epochs: list[int] = field(default_factory=list)
    components: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    fits: int = 0
    seconds: float = 0.0


def train_reference(data: TenantData, mode: str, *, threads: int, seed: int = 0) -> tuple[TrainedModel, ReferenceSearch]:
    """Run the reference procedure on data.interactions and return the final model as arrays plus the search."""
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    features = build_features(data, mode)
    alpha = 0.0 if mode == "mf" else 1e-3
    inter = data.interactions
    n = len(inter)
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(round(0.8 * n))
    train_idx, test_idx = order[:cut], order[cut:]

    def matrix(idx: np.ndarray, values: np.ndarray) -> sp.coo_matrix:
        return sp.coo_matrix((values[idx], (inter.user[idx], inter.item[idx])), shape=(data.n_users, data.n_items))

    ones = np.ones(n, np.float32)
    weights = inter.rating.astype(np.float32) + 1.0
    train, train_w, test = matrix(train_idx, ones), matrix(train_idx, weights), matrix(test_idx, ones)

    def objective(epochs: int, components: int) -> float:
        model = LightFM(loss="warp", learning_schedule="adadelta", no_components=components,
                        item_alpha=alpha, user_alpha=alpha, random_state=int(rng.integers(1 << 31)))
        model.fit(train, user_features=features.user, item_features=features.item, sample_weight=train_w,
                  epochs=epochs, num_threads=threads)
        auc = auc_score(model, test, train_interactions=train, user_features=features.user,
                        item_features=features.item, num_threads=threads)
        return float(np.mean(auc)) if auc.size else 0.0

    search = ReferenceSearch()
    lows = np.array([EPOCH_RANGE[0], COMPONENT_RANGE[0]])
    highs = np.array([EPOCH_RANGE[1], COMPONENT_RANGE[1]])
    current = np.array([rng.integers(lows[0], highs[0] + 1), rng.integers(lows[1], highs[1] + 1)])
    current_score = objective(*map(int, current))
    search.fits += 1
    best, best_score = current.copy(), current_score
    search.epochs.append(int(best[0])); search.components.append(int(best[1])); search.scores.append(best_score)
    for i in range(ITERATIONS):
        step = np.round(rng.normal(size=2) * (highs - lows) * 0.2).astype(int)
        candidate = np.clip(current + step, lows, highs)
        score = objective(*map(int, candidate))
        search.fits += 1
        temperature = 5.0 / (i + 1)
        delta = current_score - score
        if score > current_score or rng.random() < math.exp(-delta / temperature):
            current, current_score = candidate, score
        if score > best_score:
            best, best_score = candidate.copy(), score
            search.epochs.append(int(best[0])); search.components.append(int(best[1])); search.scores.append(best_score)
    final_params: dict[str, Any] = {
        "epochs": int(search.epochs[-1]), "no_components": int(search.components[-1]),
        "learning_schedule": "adadelta", "item_alpha": alpha, "user_alpha": alpha,
    }
    ctx = FitContext(threads=threads, seed=seed, features={(mode, False): features})
    part = LightFMAlgorithm(mode).fit(data, inter, {**final_params, "cold_projection": False}, ctx)
    model = assemble(data, f"reference-{mode}", part, validation_extras(data, inter, part))
    search.fits += 1
    search.seconds = time.monotonic() - started
    return model, search
