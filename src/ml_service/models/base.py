"""The Model contract: a trained model is plain arrays + metadata that the store saves and the index serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import ITEM_TYPES, Interactions, TenantData, type_names_problem

FACTORS = "factors"  # score = user_factors[u] @ item_factors.T + item_biases + user_biases[u]
ITEM_ITEM = "item_item"  # score = history[u] @ item_item  (EASE, item-kNN)
KINDS = (FACTORS, ITEM_ITEM)


@dataclass
class TrainedModel:
    """Everything needed to answer /user-items and /similar-items for one tenant, as arrays.

    Users and items are indexed by their position in `user_ids` / `item_ids` (file order of the export).
    Arrays may be memory-mapped read-only when loaded from the store.
    """

    algorithm: str
    user_ids: list[str]
    item_ids: list[str]
    item_types: np.ndarray  # int8 (n_items,), index into type_names
    kind: str = FACTORS
    # data.tenant.ITEM_TYPES, then the tenant's newer item types (spec §11 item 16); models stored before newer
    # types existed load with ITEM_TYPES
    type_names: tuple[str, ...] = ITEM_TYPES
    user_factors: np.ndarray | None = None  # float32 (n_users, k)        [FACTORS]
    item_factors: np.ndarray | None = None  # float32 (n_items, k)        [FACTORS]
    user_biases: np.ndarray | None = None  # float32 (n_users,)          [FACTORS]
    item_biases: np.ndarray | None = None  # float32 (n_items,)          [FACTORS]
    item_item: np.ndarray | None = None  # float32 (n_items, n_items)  [ITEM_ITEM]
    history: sp.csr_matrix | None = None  # float32 (n_users, n_items)  [ITEM_ITEM] the user's inputs
    positives: sp.csr_matrix | None = None  # (n_users, n_items) 1 = rating-1 item, excluded/demoted when serving
    user_cold: np.ndarray | None = None  # bool (n_users,) True = no personalised scores: serve popularity
    popularity: np.ndarray | None = None  # float32 (n_items,) popularity score (cold start, fallback)
    similarity_vectors: np.ndarray | None = None  # float32 (n_items, d) L2-normalised, for warm items
    content_vectors: np.ndarray | None = None  # float32 (n_items, d2) L2-normalised, for cold items
    item_warm: np.ndarray | None = None  # bool (n_items,) True = item has interactions
    # float64 (n_users, n_items): Unix time of each learner's latest interactions (ML_RECENT_PER_LEARNER), for the dashboard
    recent: sp.csr_matrix | None = None
    params: dict[str, Any] = field(default_factory=dict)  # chosen hyper-parameters
    metrics: dict[str, Any] = field(default_factory=dict)  # held-out metrics (see training/metrics.py)
    info: dict[str, Any] = field(default_factory=dict)  # sizes, timings, candidates, messages

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def validate(self) -> None:
        """Raise ValueError when array shapes disagree with the id lists (used by the store on load)."""
        n_u, n_i = self.n_users, self.n_items
        problem = type_names_problem(self.type_names)
        if problem:
            raise ValueError(f"type_names: {problem}")
        checks: list[tuple[str, Any, tuple[int | None, ...]]] = [
            ("item_types", self.item_types, (n_i,)),
            ("positives", self.positives, (n_u, n_i)),
            ("user_cold", self.user_cold, (n_u,)),
            ("popularity", self.popularity, (n_i,)),
            ("item_warm", self.item_warm, (n_i,)),
            ("recent", self.recent, (n_u, n_i)),
            ("similarity_vectors", self.similarity_vectors, (n_i, None)),
            ("content_vectors", self.content_vectors, (n_i, None)),
        ]
        if self.kind == FACTORS:
            checks += [
                ("user_factors", self.user_factors, (n_u, None)),
                ("item_factors", self.item_factors, (n_i, None)),
                ("user_biases", self.user_biases, (n_u,)),
                ("item_biases", self.item_biases, (n_i,)),
            ]
            if self.user_factors is None or self.item_factors is None:
                raise ValueError("a factors model needs user_factors and item_factors")
            if self.user_factors.shape[1] != self.item_factors.shape[1]:
                raise ValueError(
                    f"user_factors has {self.user_factors.shape[1]} columns but item_factors has {self.item_factors.shape[1]}"
                )
        elif self.kind == ITEM_ITEM:
            checks += [("item_item", self.item_item, (n_i, n_i)), ("history", self.history, (n_u, n_i))]
            if self.item_item is None or self.history is None:
                raise ValueError("an item_item model needs item_item and history")
        else:
            raise ValueError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        for name, array, shape in checks:
            if array is None:
                continue
            got = tuple(array.shape)
            if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
                raise ValueError(f"{name} has shape {got}, expected {tuple('any' if w is None else w for w in shape)}")


def model_for(data: TenantData, algorithm: str, **arrays: Any) -> TrainedModel:
    """A TrainedModel over `data`'s users and items (ids and types in file order) holding the given arrays."""
    return TrainedModel(
        algorithm=algorithm,
        user_ids=list(data.users.ids),
        item_ids=list(data.items.ids),
        item_types=np.asarray(data.items.type_index, dtype=np.int8),
        type_names=tuple(data.items.type_names),
        **arrays,
    )


def score_users(model: TrainedModel, users: np.ndarray) -> np.ndarray:
    """Raw model scores (len(users), n_items) float32: the one scoring function serving and evaluation share."""
    users = np.asarray(users, dtype=np.int64)
    if model.kind == FACTORS:
        assert model.user_factors is not None and model.item_factors is not None
        scores = np.asarray(model.user_factors[users], dtype=np.float32) @ np.asarray(model.item_factors, dtype=np.float32).T
        if model.item_biases is not None:
            scores += model.item_biases[None, :]
        if model.user_biases is not None:
            scores += model.user_biases[users][:, None]
        return scores
    assert model.history is not None and model.item_item is not None
    return np.asarray(model.history[users] @ model.item_item, dtype=np.float32)


@dataclass
class FitContext:
    """What an algorithm may use while fitting besides the data: threads, seed, budget, validation."""

    threads: int = 1
    seed: int = 42
    identity_features: bool = False
    deadline: float | None = None  # time.monotonic() value after which the fit should wrap up
    # Validation for early stopping / tuning: a callback scoring a candidate model (higher is better,
    # validation NDCG@10 in practice). None during the final refit.
    evaluate: Callable[[TrainedModel], float] | None = None
    features: Any = None  # a data.features.FeatureSet cache shared between candidate fits (optional)

    def time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


class Algorithm(Protocol):
    """A recommendation algorithm. Adding one touches models/ and one line of models/registry.py."""

    name: str

    def candidates(self, data: TenantData) -> list[dict[str, Any]]:
        """A few hyper-parameter settings worth trying on this data (the first is the default)."""
        ...

    def fit(
        self, data: TenantData, train: Interactions, params: Mapping[str, Any], ctx: FitContext
    ) -> TrainedModel:
        """Fit on `train` (a subset of data.interactions) and return a complete model for every user and item.

        Iterative algorithms evaluate with ctx.evaluate after each epoch when it is given, stop early when it
        stops improving, and record the chosen number of epochs in the returned model's params["epochs"].
        """
        ...
