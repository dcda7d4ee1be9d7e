"""The typed, validated per-tenant data object that parsing produces and everything downstream consumes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

# One-hot order of item_data (spec §5.4); an item's type is stored as an index into this tuple.
ITEM_TYPES: tuple[str, ...] = (
    "container_course",
    "container_workspace",
    "engage_article",
    "engage_microlearning",
    "totara_playlist",
)
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ITEM_TYPES)}
# engage_article and engage_microlearning are one family: Totara stores both as articles (D2).
TYPE_FAMILY: tuple[int, ...] = (0, 1, 2, 2, 4)
# A newer Totara item type (spec §11 item 16), e.g. totara_program: lower-case words joined by `_`, no digits (an
# item id is the type name followed by digits, so a name ending in a digit could not be told apart from the id).
NEW_TYPE_NAME = re.compile(r"[a-z]+(?:_[a-z]+)*")
MAX_ITEM_TYPES = 127  # type codes are stored as int8: the five known types plus at most 122 newer ones

# The `|`-joined columns of user_data (spec §5.5), in file order.
USER_LIST_COLUMNS: tuple[str, ...] = ("interests", "asp_position", "positions", "organisations", "badges")


def id_prefix(item_id: str) -> str | None:
    """The type part of a prefixed id (`engage_article` of `engage_article123`), or None without trailing digits."""
    head = item_id.rstrip("0123456789")
    if head == item_id or not item_id[len(head):]:
        return None
    return head


def item_type_of(item_id: str, type_index: Mapping[str, int] = TYPE_INDEX) -> int | None:
    """Type code of a prefixed id such as `engage_article123` (index into ITEM_TYPES, or into a model's own
    type names when `type_index` = type_index_of(them)), or None if the prefix is unknown."""
    head = id_prefix(item_id)
    return None if head is None else type_index.get(head)


def type_index_of(type_names: Sequence[str]) -> dict[str, int]:
    """Type name -> type code for a tenant's or a model's type names."""
    return {name: i for i, name in enumerate(type_names)}


def type_families(type_names: Sequence[str]) -> tuple[int, ...]:
    """Family code of each type code: the five known types as TYPE_FAMILY, every newer type its own family."""
    return TYPE_FAMILY + tuple(range(len(ITEM_TYPES), len(type_names)))


def type_names_problem(type_names: Sequence[str]) -> str | None:
    """Why `type_names` cannot be a model's item types (None when they can): the five known types first, in
    their order, then distinct newer names of NEW_TYPE_NAME's form, at most MAX_ITEM_TYPES in all."""
    names = list(type_names)
    if tuple(names[: len(ITEM_TYPES)]) != ITEM_TYPES:
        return f"the type names must start with {', '.join(ITEM_TYPES)}; got {names[:len(ITEM_TYPES)]}"
    if len(names) > MAX_ITEM_TYPES:
        return f"{len(names)} type names, at most {MAX_ITEM_TYPES} are allowed"
    for name in names[len(ITEM_TYPES):]:
        if not isinstance(name, str) or not NEW_TYPE_NAME.fullmatch(name):
            return f"type name {name!r} is not lower-case words joined by '_'"
    if len(set(names)) != len(names):
        return f"type names repeat: {names}"
    return None


@dataclass(frozen=True)
class Issue:
    """One defect found in an export file, precise enough for an administrator to fix it."""

    file: str  # file name, e.g. user_interactions_0.csv
    line: int  # 1-based physical line of the record's start (the header is line 1); 0 for the whole file
    column: str  # column name, or "" when the defect is not about one column
    value: str  # the offending value (shortened to 80 characters)
    expected: str  # what was expected instead
    severity: str = "error"  # "error" fails the file (and its tenant); "warning" skips the row and is counted

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        if self.column:
            where += f", column {self.column!r}"
        value = self.value if len(self.value) <= 80 else self.value[:77] + "..."
        return f"{where}: got {value!r}, expected {self.expected}"


class DataError(Exception):
    """A file of a tenant cannot be used; `issue` says exactly where and why."""

    def __init__(self, issue: Issue):
        super().__init__(str(issue))
        self.issue = issue


@dataclass
class LoadReport:
    """What parsing one tenant found: counts of rows read, dropped and collapsed, and sample warnings."""

    rows_read: dict[str, int] = field(default_factory=dict)  # file name -> data rows read
    warnings: list[Issue] = field(default_factory=list)  # the first warnings of each kind (capped)
    warning_count: int = 0  # every warning, including those not kept in `warnings`
    skipped_rows: int = 0  # rows skipped because of a warning-level defect
    dropped_unknown_user: int = 0  # interactions naming a user absent from user_data
    dropped_unknown_item: int = 0  # interactions naming an item absent from item_data
    duplicates_collapsed: int = 0  # (user, item) rows merged into the latest one
    truncated_cells: int = 0  # `|`-joined cells cut to ML_MAX_LIST_ENTRIES entries
    ignored_tag_columns: int = 0  # topic_/tag_ columns beyond ML_MAX_TAG_COLUMNS
    new_item_types: dict[str, int] = field(default_factory=dict)  # newer item type (§11 item 16) -> items read

    def as_dict(self) -> dict[str, object]:
        newer: dict[str, object] = {"new_item_types": dict(self.new_item_types)} if self.new_item_types else {}
        return newer | {
            "rows_read": dict(self.rows_read),
            "warning_count": self.warning_count,
            "warnings": [str(w) for w in self.warnings],
            "skipped_rows": self.skipped_rows,
            "dropped_unknown_user": self.dropped_unknown_user,
            "dropped_unknown_item": self.dropped_unknown_item,
            "duplicates_collapsed": self.duplicates_collapsed,
            "truncated_cells": self.truncated_cells,
            "ignored_tag_columns": self.ignored_tag_columns,
        }


@dataclass(frozen=True)
class Users:
    """user_data rows in file order; a user's internal index is its position in `ids`."""

    ids: list[str]
    lang: list[str]
    city: list[str]
    country: list[str]
    interests: list[list[str]]
    asp_position: list[list[str]]
    positions: list[list[str]]
    organisations: list[list[str]]
    badges: list[list[str]]
    competencies: list[dict[str, float]]  # competency id -> proficiency (empty -> 0.0)
    description: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "Users":
        return cls([], [], [], [], [], [], [], [], [], [], [])


@dataclass(frozen=True)
class Items:
    """item_data rows in file order; an item's internal index is its position in `ids`."""

    ids: list[str]  # prefixed ids, e.g. engage_article12
    type_index: np.ndarray  # int8, index into type_names (taken from the one-hot column holding 1)
    tag_names: list[str]  # topic_/tag_ column names as in the file header
    tags: sp.csr_matrix  # (n_items, n_tags) float32 of 0/1
    documents: list[str]
    # ITEM_TYPES, then the tenant's newer types (spec §11 item 16) in the order of their item_data columns
    type_names: tuple[str, ...] = ITEM_TYPES

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "Items":
        return cls([], np.zeros(0, np.int8), [], sp.csr_matrix((0, 0), dtype=np.float32), [])


@dataclass(frozen=True)
class Interactions:
    """Deduplicated interactions (latest row per user and item), as parallel arrays of internal indices."""

    user: np.ndarray  # int32 index into Users
    item: np.ndarray  # int32 index into Items
    rating: np.ndarray  # int8, 0 or 1
    timestamp: np.ndarray  # int64 Unix seconds

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @classmethod
    def empty(cls) -> "Interactions":
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(0, np.int64))

    def subset(self, mask: np.ndarray) -> "Interactions":
        return Interactions(self.user[mask], self.item[mask], self.rating[mask], self.timestamp[mask])


@dataclass(frozen=True)
class TenantData:
    """Everything one tenant's export says, typed and checked."""

    tenant: str
    users: Users
    items: Items
    interactions: Interactions
    report: LoadReport = field(default_factory=LoadReport)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def interaction_matrix(self, interactions: Interactions | None = None) -> sp.csr_matrix:
        """(n_users, n_items) CSR with 1 where the user interacted with the item (spec §6.4)."""
        inter = self.interactions if interactions is None else interactions
        return sp.csr_matrix(
            (np.ones(len(inter), np.float32), (inter.user, inter.item)), shape=(self.n_users, self.n_items)
        )

    def positive_matrix(self, interactions: Interactions | None = None) -> sp.csr_matrix:
        """(n_users, n_items) CSR with 1 where the rating is 1: the user's positive items (spec §6.4)."""
        inter = self.interactions if interactions is None else interactions
        return self.interaction_matrix(inter.subset(inter.rating == 1))
