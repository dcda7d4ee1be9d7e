"""The model contract: an algorithm fits a scoring part; a TrainedModel is that part, its serving extras and ids."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import scipy.sparse as sp

from ml_service.data.tenant import ITEM_TYPES, Interactions, TenantData, type_names_problem
from ml_service.models.parts import (
    FACTORS, ITEM_ITEM, KINDS, FactorModel, ItemItemModel, ScoringPart, ServingExtras, check_array,
)

ARRAY_NAMES = ("item_types", *FactorModel.ARRAYS, *ItemItemModel.ARRAYS[:2], *ServingExtras.ARRAYS)


@dataclass
class TrainedModel:
    """Everything needed to answer /user-items and /similar-items for one tenant: a scoring part and its extras.

    Users and items are indexed by their position in `user_ids` / `item_ids` (file order of the export).
    `scoring` is what the algorithm fitted (models/parts.py); `extras` what the pipeline built beside it.
    Arrays may be memory-mapped read-only when loaded from the store. The arrays can also be read under the
    names they are stored by (model.user_factors, model.popularity, ...; None when the parts do not have one).
    """

    algorithm: str
    user_ids: list[str]
    item_ids: list[str]
    item_types: np.ndarray  # int8 (n_items,), index into type_names
    scoring: ScoringPart
    extras: ServingExtras
    # data.tenant.ITEM_TYPES, then the tenant's newer item types (spec §11 item 16); models stored before newer
    # types existed load with ITEM_TYPES
    type_names: tuple[str, ...] = ITEM_TYPES
    params: dict[str, Any] = field(default_factory=dict)  # chosen hyper-parameters
    metrics: dict[str, Any] = field(default_factory=dict)  # held-out metrics (see training/metrics.py)
    info: dict[str, Any] = field(default_factory=dict)  # sizes, timings, candidates, messages

    @property
    def kind(self) -> str:
        return self.scoring.kind

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: the arrays by their stored names, read-only.
        if name in ARRAY_NAMES[1:]:
            for part in (self.__dict__.get("scoring"), self.__dict__.get("extras")):
                if part is not None and name in part.ARRAYS:
                    return getattr(part, name)
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ARRAY_NAMES[1:]:
            raise AttributeError(f"model.{name} is part of model.scoring or model.extras (frozen): use with_arrays()")
        super().__setattr__(name, value)

    def arrays(self) -> dict[str, Any]:
        """Every array under its stored name (the on-disk layout): item_types, the scoring part's, the extras'."""
        return {"item_types": self.item_types, **self.scoring.arrays(), **self.extras.arrays()}

    def validate(self) -> None:
        """Raise ValueError naming the array whose shape, dtype or values disagree with the ids (store: publish, load)."""
        problem = type_names_problem(self.type_names)
        if problem:
            raise ValueError(f"type_names: {problem}")
        check_array("item_types", self.item_types, (self.n_items,), "iu")
        if not isinstance(self.scoring, (FactorModel, ItemItemModel)):
            raise ValueError(f"unknown scoring part {type(self.scoring).__name__}; expected one of {KINDS}")
        self.scoring.validate()
        if (self.scoring.n_users, self.scoring.n_items) != (self.n_users, self.n_items):
            raise ValueError(
                f"the {self.kind} part is for {self.scoring.n_users} users x {self.scoring.n_items} items, "
                f"the ids are {self.n_users} x {self.n_items}"
            )
        self.extras.validate(self.n_users, self.n_items)


def model_from_arrays(
    algorithm: str,
    user_ids: list[str],
    item_ids: list[str],
    item_types: np.ndarray,
    kind: str = FACTORS,
    type_names: tuple[str, ...] = ITEM_TYPES,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    **arrays: Any,
) -> TrainedModel:
    """A TrainedModel from arrays under their stored names (the store's reader; tests). Arrays a version may lack
    (older versions, models without biases) default to what they meant: no cold users, zero biases, no positives,
    zero popularity, every item warm. ValueError names an array that is wrong."""
    n_users, n_items = len(user_ids), len(item_ids)
    unknown = sorted(set(arrays) - set(ARRAY_NAMES))
    if unknown:
        raise ValueError(f"unknown model array(s) {', '.join(unknown)}")
    given = {name: value for name, value in arrays.items() if value is not None}
    cold = given.pop("user_cold", np.zeros(n_users, dtype=bool))
    if kind == FACTORS:
        for name in ("user_factors", "item_factors"):
            if name not in given:
                raise ValueError("a factors model needs user_factors and item_factors")
        scoring: ScoringPart = FactorModel(
            user_factors=given.pop("user_factors"),
            item_factors=given.pop("item_factors"),
            user_biases=given.pop("user_biases", np.zeros(n_users, np.float32)),
            item_biases=given.pop("item_biases", np.zeros(n_items, np.float32)),
            user_cold=cold,
        )
    elif kind == ITEM_ITEM:
        if "item_item" not in given or "history" not in given:
            raise ValueError("an item_item model needs item_item and history")
        scoring = ItemItemModel(item_item=given.pop("item_item"), history=given.pop("history"), user_cold=cold)
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
    stray = sorted(set(given) & {*FactorModel.ARRAYS, *ItemItemModel.ARRAYS})
    if stray:
        raise ValueError(f"a {kind} model has no {', '.join(stray)}")
    extras = ServingExtras(
        positives=given.pop("positives", sp.csr_matrix((n_users, n_items), dtype=np.float32)),
        popularity=given.pop("popularity", np.zeros(n_items, np.float32)),
        item_warm=given.pop("item_warm", np.ones(n_items, dtype=bool)),
        similarity_vectors=given.pop("similarity_vectors", None),
        content_vectors=given.pop("content_vectors", None),
        recent=given.pop("recent", None),
    )
    model = TrainedModel(
        algorithm=algorithm, user_ids=list(user_ids), item_ids=list(item_ids), item_types=item_types, scoring=scoring,
        extras=extras, type_names=tuple(type_names), params=dict(params or {}), metrics=dict(metrics or {}),
        info=dict(info or {}),
    )
    model.validate()
    return model


def with_arrays(model: TrainedModel, **changes: Any) -> TrainedModel:
    """A copy of `model` with some arrays (by stored name) replaced, built and validated again."""
    arrays = {name: value for name, value in model.arrays().items() if name != "item_types"} | changes
    return model_from_arrays(
        model.algorithm, model.user_ids, model.item_ids, changes.pop("item_types", model.item_types), model.kind,
        model.type_names, model.params, model.metrics, model.info, **{k: v for k, v in arrays.items() if k != "item_types"},
    )


def model_for(data: TenantData, algorithm: str, **arrays: Any) -> TrainedModel:
    """A TrainedModel over `data`'s users and items (ids and types in file order) from arrays by stored name."""
    return model_from_arrays(
        algorithm, list(data.users.ids), list(data.items.ids), np.asarray(data.items.type_index, dtype=np.int8),
        type_names=tuple(data.items.type_names), **arrays,
    )


def assemble(data: TenantData, algorithm: str, scoring: ScoringPart, extras: ServingExtras) -> TrainedModel:
    """The model serving and evaluation use: a fitted scoring part over `data`'s users and items, and its extras."""
    return TrainedModel(
        algorithm=algorithm,
        user_ids=list(data.users.ids),
        item_ids=list(data.items.ids),
        item_types=np.asarray(data.items.type_index, dtype=np.int8),
        scoring=scoring,
        extras=extras,
        type_names=tuple(data.items.type_names),
        params=dict(scoring.params),
        info=dict(scoring.info),
    )


def score_users(model: TrainedModel, users: np.ndarray) -> np.ndarray:
    """Raw model scores (len(users), n_items) float32: the one scoring function serving and evaluation share."""
    return model.scoring.score(np.asarray(users, dtype=np.int64))


@dataclass
class FitContext:
    """What an algorithm may use while fitting besides the data: threads, seed, budget, validation."""

    threads: int = 1
    seed: int = 42
    identity_features: bool = False
    deadline: float | None = None  # time.monotonic() value after which the fit should wrap up
    # Validation for early stopping / tuning: a callback scoring a candidate part (higher is better,
    # validation NDCG@10 in practice). None during the final refit.
    evaluate: Callable[[ScoringPart], float] | None = None
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
    ) -> ScoringPart:
        """Fit on `train` (a subset of data.interactions) and return the scoring part for every user and item.

        Only the part: the pipeline builds what serves beside it (models/extras.py) once, after the final fit.
        Iterative algorithms evaluate with ctx.evaluate after each epoch when it is given, stop early when it
        stops improving, and record the chosen number of epochs in the returned part's params["epochs"].
        """
        ...
