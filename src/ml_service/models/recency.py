"""Recency-weighted histories for item-item models: a learner's newer interactions count more, if validation agrees."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import Interactions, TenantData
from ml_service.models.base import FitContext
from ml_service.models.parts import ItemItemModel

# Half-lives (in interactions, counted back from each learner's newest) tried in this order while validation
# improves; the first is no decay. The history is what the item-item weights are applied to when scoring, so
# trying one costs an evaluation, not a fit. Validation NDCG@10, service path, each learner's newest 20 % held out
# (benchmarks/recency_tradeoff.py, results/recency_tradeoff.json), floor 0.1: MovieLens-100k knn (200 neighbours)
# ∞ 0.130, 30 0.148, 10 0.157, 4 0.159, 2 0.153; MovieLens-1M knn ∞ 0.087, 30 0.102, 10 0.116, 4 0.120, 2 0.116.
# Half-life 1 validates below 2 on both (ease and knn, floor 0.001), so the list ends at 2.
HALF_LIVES: tuple[float, ...] = (math.inf, 30.0, 10.0, 4.0, 2.0)
# The weight of a learner's oldest interactions never falls below MIN_HISTORY_WEIGHT unless validation finds the
# far lower floor LOW_HISTORY_WEIGHT (the newest few interactions alone) better by LOW_FLOOR_MARGIN. The low floor
# forgets a learner's long-term interests; where the newest interactions say much more, it pays on the hold-out
# that serving faces (results/recency_tradeoff.json, gain of the low floor over the best at 0.1 on validation /
# on the latest hold-out): MovieLens-1M knn +22 % / +22 %, ease +26 % / +24 %, seq_edlae +22 % / +23 %;
# MovieLens-100k ease +13 % / +18 %, seq_edlae +15 % / +13 %, knn +8 % / 0 % (not taken at 10 %). What a learner
# takes up at any time (a random hold-out) pays for it: MovieLens-100k, random hold-out, default `latest`
# validation, `auto` 0.2377 -> 0.1165 (ease at the low floor). A 20 % margin did not help there: ease took the
# low floor with a smaller λ and auto gave 0.0904 on the random hold-out and 0.1503 instead of 0.1566 on the
# latest one (benchmarks/recency.py). A 3 % margin took it for knn too, for no gain on the hold-out.
MIN_HISTORY_WEIGHT = 0.1
LOW_HISTORY_WEIGHT = 1e-3
LOW_FLOOR_MARGIN = 0.10  # relative validation gain the low floor needs over the best with MIN_HISTORY_WEIGHT


def has_time(train: Interactions) -> bool:
    """Whether the interactions have varying timestamps (without them there is no recency to weight)."""
    return len(train) > 0 and bool(np.ptp(train.timestamp) > 0)


def recency_weights(
    data: TenantData, train: Interactions, half_life: float, floor: float = MIN_HISTORY_WEIGHT
) -> sp.csr_matrix:
    """(n_users, n_items) float32: max(0.5^(rank of the pair's newest interaction from the learner's newest /
    half_life), floor).

    Rank 0 is the learner's newest interaction; ties in time go to the higher item index. An infinite half-life
    gives 1 for every pair.
    """
    users = np.asarray(train.user)
    items = np.asarray(train.item)
    values = np.ones(len(train), np.float32)
    if math.isfinite(half_life) and len(train):
        order = np.lexsort((-items, -np.asarray(train.timestamp), users))
        sorted_users = users[order]
        starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        values[order] = np.maximum(0.5 ** (rank / half_life), floor)
    # a pair seen more than once keeps its newest (largest) weight
    keep = np.lexsort((-values, items, users))
    pair = users[keep].astype(np.int64) * max(data.n_items, 1) + items[keep]
    first = np.r_[True, pair[1:] != pair[:-1]]
    keep = keep[first]
    return sp.csr_matrix((values[keep], (users[keep], items[keep])), shape=(data.n_users, data.n_items), dtype=np.float32)


def weighted_history(
    history: sp.csr_matrix, data: TenantData, train: Interactions, half_life: float, floor: float = MIN_HISTORY_WEIGHT
) -> sp.csr_matrix:
    """`history` (built from `train`) with each entry multiplied by its recency weight; itself when half_life is ∞."""
    if not math.isfinite(half_life):
        return history
    weighted = sp.csr_matrix(history.multiply(recency_weights(data, train, half_life, floor)), dtype=np.float32)
    weighted.sort_indices()
    return weighted


def with_recency(
    part: ItemItemModel, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext
) -> ItemItemModel:
    """`part` scoring a recency-weighted history: params["half_life"] (and "history_floor") when given (absent = no
    decay), else, while validating (ctx.evaluate), the HALF_LIVES in order with the MIN_HISTORY_WEIGHT floor until
    one validates worse than the one before; then, from the best finite one down, the same with the
    LOW_HISTORY_WEIGHT floor, kept only when it validates LOW_FLOOR_MARGIN better.

    The choice goes into part.params (only what differs from no decay and the default floor, so that no key means
    no decay, which JSON can say), the scores tried into part.info["validation_by_half_life"] ("<half-life>" or
    "<half-life>@<floor>").
    """
    if not has_time(train):
        return part
    if ctx.evaluate is None or "half_life" in params:
        life = float(params.get("half_life", math.inf))
        return _weighted(part, data, train, life, float(params.get("history_floor", MIN_HISTORY_WEIGHT)))
    tried: dict[str, float] = {}

    def score(life: float, floor: float) -> float:
        value = float(ctx.evaluate(_weighted(part, data, train, life, floor)))
        tried[str(life) if floor == MIN_HISTORY_WEIGHT else f"{life}@{floor:g}"] = round(value, 6)
        return value

    chosen = _weighted(part, data, train, *choose_weighting(score))  # one more weighting, no candidate kept
    chosen.info["validation_by_half_life"] = tried
    return chosen


def choose_weighting(score: Callable[[float, float], float], margin: float = LOW_FLOOR_MARGIN) -> tuple[float, float]:
    """(half-life, floor) by validation: the HALF_LIVES in order with the MIN_HISTORY_WEIGHT floor until one scores
    no better than the one before; then, from the best finite one down, the same with the LOW_HISTORY_WEIGHT floor,
    kept only when it scores `margin` (relative) better. score(half_life, floor) is called once per pair tried."""

    def descend(lives: tuple[float, ...], floor: float) -> tuple[float, float] | None:
        best: tuple[float, float] | None = None  # (score, half-life)
        for life in lives:
            value = score(life, floor)
            if best is not None and value <= best[0]:
                break
            best = (value, life)
        return best

    best = descend(HALF_LIVES, MIN_HISTORY_WEIGHT)
    assert best is not None
    if math.isfinite(best[1]):
        low = descend(tuple(h for h in HALF_LIVES if h <= best[1]), LOW_HISTORY_WEIGHT)
        if low is not None and low[0] > best[0] * (1.0 + margin):
            return low[1], LOW_HISTORY_WEIGHT
    return best[1], MIN_HISTORY_WEIGHT


def _weighted(part: ItemItemModel, data: TenantData, train: Interactions, life: float, floor: float) -> ItemItemModel:
    params = {key: value for key, value in part.params.items() if key not in ("half_life", "history_floor")}
    if math.isfinite(life):
        params["half_life"] = life
        if floor != MIN_HISTORY_WEIGHT:
            params["history_floor"] = floor
    return dataclasses.replace(
        part, history=weighted_history(part.history, data, train, life, floor), params=params, info=dict(part.info)
    )
