"""What scores (a factor model, an item-item model) and what serves beside it: small frozen, validated parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import numpy as np
import scipy.sparse as sp

FACTORS = "factors"  # score = user_factors[u] @ item_factors.T + item_biases + user_biases[u]
ITEM_ITEM = "item_item"  # score = history[u] @ item_item  (EASE, item-kNN)
KINDS = (FACTORS, ITEM_ITEM)


def check_array(name: str, array: Any, shape: tuple[int | None, ...], kind: str, *, finite: bool = True) -> None:
    """ValueError naming `name` unless `array` is a numpy array (or CSR matrix) of `shape` (None = any) whose dtype
    kind is one of `kind` ("f" float, "b" bool, "i" integer) and, for floats when `finite`, holds no NaN or inf."""
    if not (isinstance(array, np.ndarray) or sp.issparse(array)):
        raise ValueError(f"{name} is a {type(array).__name__}, expected a numpy array")
    got = tuple(array.shape)
    if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
        raise ValueError(f"{name} has shape {got}, expected {tuple('any' if w is None else w for w in shape)}")
    if array.dtype.kind not in kind:
        raise ValueError(f"{name} has dtype {array.dtype}, expected {_KIND_NAMES.get(kind, kind)}")
    values = array.data if sp.issparse(array) else array
    if finite and array.dtype.kind == "f" and values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf)")


_KIND_NAMES = {"f": "floating point", "b": "bool", "iu": "integer", "fb": "floating point or bool"}


@dataclass(frozen=True, eq=False)
class FactorModel:
    """score(u, i) = user_factors[u] · item_factors[i] + item_biases[i] + user_biases[u]; cold users score nothing.

    `user_cold[u]` = the model has no personalised scores for u (ranking serves popularity instead). `params` are
    the fitted hyper-parameters (epochs included), `info` what the fit wants recorded.
    """

    user_factors: np.ndarray  # float (n_users, k)
    item_factors: np.ndarray  # float (n_items, k)
    user_biases: np.ndarray  # float (n_users,)
    item_biases: np.ndarray  # float (n_items,)
    user_cold: np.ndarray  # bool (n_users,)
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = FACTORS
    ARRAYS: ClassVar[tuple[str, ...]] = ("user_factors", "item_factors", "user_biases", "item_biases", "user_cold")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ValueError naming the array whose shape, dtype or values are wrong."""
        n_users, n_items = self.n_users, self.n_items
        check_array("user_factors", self.user_factors, (None, None), "f")
        check_array("item_factors", self.item_factors, (None, self.user_factors.shape[1]), "f")
        check_array("user_biases", self.user_biases, (n_users,), "f")
        check_array("item_biases", self.item_biases, (n_items,), "f")
        check_array("user_cold", self.user_cold, (n_users,), "b")

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(np.shape(self.item_factors)[0])

    def arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.ARRAYS}

    def score(self, users: np.ndarray) -> np.ndarray:
        """Raw scores (len(users), n_items) float32."""
        scores = np.asarray(self.user_factors[users], dtype=np.float32) @ np.asarray(self.item_factors, dtype=np.float32).T
        scores += self.item_biases[None, :]
        scores += self.user_biases[users][:, None]
        return scores


@dataclass(frozen=True, eq=False)
class ItemItemModel:
    """score(u, j) = Σ_i history[u, i] · item_item[i, j] (EASE, EDLAE, item-kNN); cold users have no history."""

    item_item: np.ndarray  # float (n_items, n_items)
    history: sp.csr_matrix  # float (n_users, n_items): the users' inputs
    user_cold: np.ndarray  # bool (n_users,)
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = ITEM_ITEM
    ARRAYS: ClassVar[tuple[str, ...]] = ("item_item", "history", "user_cold")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ValueError naming the array whose shape, dtype or values are wrong."""
        n_items = int(np.shape(self.item_item)[0]) if np.ndim(self.item_item) == 2 else -1
        check_array("item_item", self.item_item, (n_items, n_items), "f")
        check_array("history", self.history, (None, n_items), "f")
        check_array("user_cold", self.user_cold, (self.n_users,), "b")

    @property
    def n_users(self) -> int:
        return int(self.history.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_item.shape[0])

    def arrays(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.ARRAYS}

    def score(self, users: np.ndarray) -> np.ndarray:
        """Raw scores (len(users), n_items) float32."""
        return np.asarray(self.history[users] @ self.item_item, dtype=np.float32)


ScoringPart = Union[FactorModel, ItemItemModel]
PART_TYPES: dict[str, type[FactorModel] | type[ItemItemModel]] = {FACTORS: FactorModel, ITEM_ITEM: ItemItemModel}


@dataclass(frozen=True, eq=False)
class ServingExtras:
    """What serves beside the scores, built by the pipeline once after the final fit (and cheaply for validation).

    positives: rating-1 training items, left out or demoted as seen; popularity: the cold-start and fallback
    ranking; item_warm: the item has interactions (similar items by `similarity_vectors`, else by
    `content_vectors`). The two vector sets are None when not built (validation, or versions stored without them).
    """

    positives: sp.csr_matrix  # (n_users, n_items) 1 = rating-1 item
    popularity: np.ndarray  # float (n_items,)
    item_warm: np.ndarray  # bool (n_items,)
    similarity_vectors: np.ndarray | None = None  # float (n_items, d) L2-normalised, for warm items
    content_vectors: np.ndarray | None = None  # float (n_items, d2) L2-normalised, for cold items
    # float64 (n_users, n_items): Unix time of each learner's latest interactions (ML_RECENT_PER_LEARNER), for the
    # dashboard's "try it"; None in validation and in versions stored before it
    recent: sp.csr_matrix | None = None
    ARRAYS: ClassVar[tuple[str, ...]] = (
        "positives", "popularity", "item_warm", "similarity_vectors", "content_vectors", "recent",
    )

    def validate(self, n_users: int, n_items: int) -> None:
        """ValueError naming the array whose shape, dtype or values are wrong for n_users x n_items."""
        check_array("positives", self.positives, (n_users, n_items), "fbiu")
        check_array("popularity", self.popularity, (n_items,), "f")
        check_array("item_warm", self.item_warm, (n_items,), "b")
        for name in ("similarity_vectors", "content_vectors"):
            if getattr(self, name) is not None:
                check_array(name, getattr(self, name), (n_items, None), "f")
        if self.recent is not None:
            check_array("recent", self.recent, (n_users, n_items), "f")

    def arrays(self) -> dict[str, Any]:
        return {name: value for name in self.ARRAYS if (value := getattr(self, name)) is not None}


def replace_arrays(part: Any, **arrays: Any) -> Any:
    """A copy of a frozen part with some arrays swapped for views of the same memory (no validation: the caller
    vouches that the values are the validated ones, e.g. a memory map seen as a plain array)."""
    copy = object.__new__(type(part))
    for name, value in {**part.__dict__, **arrays}.items():
        object.__setattr__(copy, name, value)
    return copy
