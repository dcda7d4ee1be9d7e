"""The CSV contracts of the Totara export files (spec §5) in one place: columns, id forms, value forms, limits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ml_service.data.tenant import ITEM_TYPES, NEW_TYPE_NAME, USER_LIST_COLUMNS, DataError, Issue, item_type_of

__all__ = [
    "BAD_ROW_ALLOWANCE",
    "BAD_ROW_FRACTION",
    "INTERACTION_COLUMNS",
    "ITEM_TYPES",
    "LIST_SEPARATOR",
    "TAG_PREFIXES",
    "USER_COLUMNS",
    "USER_COLUMNS_OLD",
    "USER_LIST_COLUMNS",
    "WARNINGS_PER_KIND",
    "ItemLayout",
    "UserLayout",
    "interaction_layout",
    "item_layout",
    "item_type_of",
    "parse_competencies",
    "over_limit",
    "parse_list",
    "user_layout",
]

INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "rating", "timestamp")
USER_COLUMNS: tuple[str, ...] = (
    "user_id",
    "lang",
    "city",
    "country",
    "interests",
    "asp_position",
    "positions",
    "organisations",
    "competencies_scale",
    "badges",
    "description",
)
USER_COLUMNS_OLD: tuple[str, ...] = ("user_id", "lang")  # older Totara; the other columns count as empty
ITEM_REQUIRED: tuple[str, ...] = ("item_id", *ITEM_TYPES, "document")
TAG_PREFIXES: tuple[str, ...] = ("topic_", "tag_")  # older Totara writes `topic_` for course tags too

LIST_SEPARATOR = "|"
COMPETENCY_SEPARATOR = ":"
RATINGS: frozenset[str] = frozenset({"0", "1"})
MAX_TIMESTAMP_DIGITS = 18  # anything longer overflows int64

# A file whose skipped rows exceed both limits fails: mostly-garbage data must not silently train.
BAD_ROW_FRACTION = 0.05
BAD_ROW_ALLOWANCE = 5
WARNINGS_PER_KIND = 20  # sample warnings kept in LoadReport per (file, column, expected)

EXPECT_RATING = "0 or 1"
EXPECT_TIMESTAMP = "a non-negative integer (Unix seconds)"
EXPECT_ITEM_ID = "a type prefix (" + ", ".join(ITEM_TYPES) + ") followed by digits"
EXPECT_USER_ID = "a non-empty user id"
EXPECT_ONE_HOT = "exactly one 1 among the type columns " + ", ".join(ITEM_TYPES)
EXPECT_ZERO_ONE = "0 or 1"
EXPECT_COMPETENCY = "competencyid:proficiency with a numeric (or empty) proficiency"


def too_many_bad_rows(bad: int, rows: int) -> bool:
    """True when `bad` skipped rows out of `rows` data rows should fail the whole file."""
    return bad > BAD_ROW_ALLOWANCE and bad > BAD_ROW_FRACTION * rows


def _missing(file: str, header: list[str], required: tuple[str, ...], expected: str) -> None:
    present = set(header)
    for column in required:
        if column not in present:
            raise DataError(Issue(file, 1, column, "(missing)", f"a header with the columns {expected}"))


def _duplicates(file: str, header: list[str], names: tuple[str, ...] | set[str]) -> None:
    seen: set[str] = set()
    for column in header:
        if column in names and column in seen:
            raise DataError(Issue(file, 1, column, column, "each column only once in the header"))
        seen.add(column)


def interaction_layout(file: str, header: list[str]) -> list[int]:
    """Positions of user_id, item_id, rating, timestamp; DataError when one is missing or repeated."""
    _missing(file, header, INTERACTION_COLUMNS, ",".join(INTERACTION_COLUMNS))
    _duplicates(file, header, INTERACTION_COLUMNS)
    return [header.index(c) for c in INTERACTION_COLUMNS]


@dataclass(frozen=True)
class UserLayout:
    """Where each user_data column sits in the header; None for columns an older export leaves out."""

    positions: dict[str, int | None]
    unknown: list[str]  # header columns this version does not use (ignored with a warning)


def user_layout(file: str, header: list[str]) -> UserLayout:
    """Full form, or the old `user_id,lang` form (other columns empty); DataError on anything in between."""
    known = [c for c in header if c in USER_COLUMNS]
    old_form = set(known) == set(USER_COLUMNS_OLD)
    full = ",".join(USER_COLUMNS)
    expected = f"{full} (or the older form {','.join(USER_COLUMNS_OLD)})"
    _missing(file, header, USER_COLUMNS_OLD if old_form else USER_COLUMNS, expected)
    _duplicates(file, header, set(USER_COLUMNS))
    positions = {c: (header.index(c) if c in header else None) for c in USER_COLUMNS}
    return UserLayout(positions, [c for c in header if c not in USER_COLUMNS])


@dataclass(frozen=True)
class ItemLayout:
    """Where item_data's id, one-hot type, tag and document columns sit in the header."""

    item_id: int
    types: list[int]  # positions of the ITEM_TYPES columns, in ITEM_TYPES order
    tag_columns: list[int]  # positions of every topic_/tag_ column, in header order
    tag_names: list[str]  # unique tag names in header order
    tag_of_column: list[int]  # for each tag column, its index into tag_names (repeated names share one tag)
    document: int
    unknown: list[str]
    ignored_tags: list[str] = field(default_factory=list)  # tag columns beyond the cap, in header order
    # Columns that may be a newer item type's one-hot column (spec §11 item 16): not in the contract, named like a
    # type (NEW_TYPE_NAME), in header order. One is a type column when some item id has its name as prefix.
    type_candidates: list[int] = field(default_factory=list)


def item_layout(file: str, header: list[str], max_tag_columns: int | None = None) -> ItemLayout:
    """item_id, the five type columns, any number of topic_/tag_ columns and document; DataError if one is missing.

    With `max_tag_columns`, only the first that many topic_/tag_ columns (in header order) become tags; the
    others are listed in `ignored_tags` and not read (each tag column is a feature column of every item).
    """
    _missing(file, header, ITEM_REQUIRED, ",".join(ITEM_REQUIRED[:-1]) + ",<topic_/tag_ columns>,document")
    _duplicates(file, header, set(ITEM_REQUIRED))
    all_tag_columns = [i for i, c in enumerate(header) if c.startswith(TAG_PREFIXES)]
    tag_columns = all_tag_columns if max_tag_columns is None else all_tag_columns[:max_tag_columns]
    tag_names = list(dict.fromkeys(header[i] for i in tag_columns))
    tag_index = {name: j for j, name in enumerate(tag_names)}
    extra = [i for i, c in enumerate(header) if c not in ITEM_REQUIRED and not c.startswith(TAG_PREFIXES)]
    candidates = [i for i in extra if NEW_TYPE_NAME.fullmatch(header[i]) and header.index(header[i]) == i]
    unknown = [header[i] for i in extra]  # the candidates included: item_data tells which of them are types
    return ItemLayout(
        header.index("item_id"),
        [header.index(t) for t in ITEM_TYPES],
        tag_columns,
        tag_names,
        [tag_index[header[i]] for i in tag_columns],
        header.index("document"),
        unknown,
        [header[i] for i in all_tag_columns[len(tag_columns):]],
        candidates,
    )


def parse_list(cell: str, limit: int | None = None) -> list[str]:
    """A `|`-joined cell as its values; empty cell -> [], empty pieces (`a||b`) are dropped.

    With `limit`, only the first `limit` pieces are split off and kept (see `over_limit`), so a cell of a
    million entries costs no more than one of `limit`.
    """
    if not cell:
        return []
    if limit is None:
        values = cell.split(LIST_SEPARATOR)
    else:
        values = cell.split(LIST_SEPARATOR, limit)[:limit]
    return values if "" not in values else [v for v in values if v]


def over_limit(cell: str, limit: int) -> bool:
    """True when `parse_list(cell, limit)` dropped pieces: the cell has more than `limit` of them."""
    return cell.count(LIST_SEPARATOR) >= limit


def parse_competencies(cell: str, limit: int | None = None) -> tuple[dict[str, float], list[str]]:
    """`id:proficiency|...` -> ({id: proficiency}, malformed entries); empty proficiency = 0, repeats keep the max.

    With `limit`, only the first `limit` entries are read (as in `parse_list`).
    """
    result: dict[str, float] = {}
    bad: list[str] = []
    for entry in parse_list(cell, limit):
        competency, colon, level = entry.partition(COMPETENCY_SEPARATOR)
        if not colon or not competency:
            bad.append(entry)
            continue
        if level == "":
            value = 0.0
        else:
            try:
                value = float(level)
            except ValueError:
                bad.append(entry)
                continue
            if not math.isfinite(value):
                bad.append(entry)
                continue
        result[competency] = max(value, result.get(competency, value))
    return result, bad


def valid_item_id(item_id: str) -> bool:
    """True for one of the five type prefixes followed by ASCII digits, e.g. `engage_article12`."""
    return item_type_of(item_id) is not None

