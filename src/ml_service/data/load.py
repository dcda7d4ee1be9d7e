"""Parse and validate one tenant's export files into TenantData; every defect names file, line, column and value.

Which defects skip a row (counted warning) and which fail the file is documented in docs/data-validation.md.
Rows are read in chunks by the csv module and checked column by column with numpy and set operations; the
per-row Python path runs only for rows already known to be defective, so a clean file costs little more than
splitting it.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ml_service.data import schema
from ml_service.data.csvio import BadRecord, CsvTable, RowChunk
from ml_service.data.limits import InputLimits
from ml_service.data.newer_types import NewerTypes, check_unique
from ml_service.data.tenant import (
    ITEM_TYPES,
    DataError,
    Interactions,
    Issue,
    Items,
    LoadReport,
    TenantData,
    Users,
    item_type_of,
    type_index_of,
)
from ml_service.source.base import TenantFiles

__all__ = ["load_tenant", "load_users", "load_items", "load_interactions", "FileFindings"]

_DIGIT_WEIGHTS = {n: 10 ** np.arange(n - 1, -1, -1, dtype=np.int64) for n in range(1, schema.MAX_TIMESTAMP_DIGITS + 1)}


def load_tenant(files: TenantFiles) -> TenantData:
    """Read user_data, item_data and user_interactions of one tenant; DataError when one of them is unusable."""
    report = LoadReport()
    limits = files.limits
    with _collector_paused():
        users = load_users(files.user_data, report, limits=limits)
        items = load_items(files.item_data, report, limits=limits)
        user_index = _index_of(users.ids)
        item_index = _index_of(items.ids)
        interactions = load_interactions(
            files.user_interactions, user_index, item_index, report, limits=limits, type_names=items.type_names
        )
    return TenantData(files.tenant, users, items, interactions, report)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing.

    Parsing allocates millions of short-lived row lists while hundreds of thousands of long-lived user lists
    exist; every full collection walks all of them, which more than doubled the time of a 5M-row file. Parsing
    creates no reference cycles, so nothing is lost by collecting once afterwards instead.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _index_of(ids: list[str]) -> dict[str, int]:
    return {value: i for i, value in enumerate(ids)}


class FileFindings:
    """Warnings of one file: fed into the shared LoadReport, plus the file's own skipped-row count."""

    def __init__(self, report: LoadReport, name: str):
        self.report = report
        self.name = name
        self.rows = 0  # data records read, defective ones included
        self.skipped = 0
        self.first_skip: Issue | None = None
        self._kept = Counter[tuple[str, str, str]]()

    def warn(self, line: int, column: str, value: str, expected: str, *, skip: bool = True) -> None:
        issue = Issue(self.name, line, column, value, expected, severity="warning")
        report = self.report
        report.warning_count += 1
        if skip:
            report.skipped_rows += 1
            self.skipped += 1
            if self.first_skip is None:
                self.first_skip = issue
        kind = (issue.file, issue.column, issue.expected)
        if self._kept[kind] < schema.WARNINGS_PER_KIND:
            self._kept[kind] += 1
            report.warnings.append(issue)

    def bad_record(self, record: BadRecord) -> None:
        self.rows += 1
        self.warn(record.line, "", record.message, "a well-formed CSV record")

    def unknown_columns(self, columns: Sequence[str]) -> None:
        for column in columns:
            self.warn(1, column, column, "only the columns of the export contract (column ignored)", skip=False)

    def finish(self) -> None:
        """Record the row count; DataError when too many rows were skipped for the file to be trusted."""
        self.report.rows_read[self.name] = self.rows
        if schema.too_many_bad_rows(self.skipped, self.rows):
            limit = f"{schema.BAD_ROW_FRACTION:.0%}".replace("%", " %")
            raise DataError(
                Issue(
                    self.name,
                    0,
                    "",
                    f"{self.skipped} of {self.rows} rows defective",
                    f"at most {limit} defective rows (or {schema.BAD_ROW_ALLOWANCE}); first: {self.first_skip}",
                )
            )


def _well_formed(chunk: RowChunk, width: int, findings: FileFindings) -> tuple[list[list[str]], list[int]]:
    """The chunk's rows with `width` fields and their positions in the chunk; other rows skipped with a warning."""
    rows = chunk.rows
    findings.rows += len(rows)
    if set(map(len, rows)) == {width}:
        return rows, list(range(len(rows)))
    kept: list[int] = []
    for i, row in enumerate(rows):
        if len(row) == width:
            kept.append(i)
        else:
            findings.warn(chunk.line_of(i), "", f"{len(row)} fields", f"{width} fields as in the header")
    return [rows[i] for i in kept], kept


def _parts(table: CsvTable, findings: FileFindings) -> Iterator[RowChunk]:
    for part in table.chunks():
        if isinstance(part, BadRecord):
            findings.bad_record(part)
        else:
            yield part


# ---------------------------------------------------------------- user_data


def load_users(path: Path, report: LoadReport, name: str | None = None, *, limits: InputLimits = InputLimits()) -> Users:
    """user_data in file order; empty user ids skip the row, a repeated user id fails the file."""
    with CsvTable(path, name, max_record_bytes=limits.max_record_bytes) as table:
        findings = FileFindings(report, table.name)
        if table.header is None:
            findings.finish()
            return Users.empty()
        layout = schema.user_layout(table.name, table.header)
        findings.unknown_columns(layout.unknown)
        columns: dict[str, list] = {c: [] for c in schema.USER_COLUMNS}
        columns["competencies"] = []
        first_line: dict[str, int] = {}
        shared: dict[str, dict[str, str]] = {}
        width = len(table.header)
        id_at = layout.positions["user_id"]
        for chunk in _parts(table, findings):
            rows, where = _well_formed(chunk, width, findings)
            kept_rows = []
            for row, i in zip(rows, where):
                user_id = row[id_at]
                if not user_id:
                    findings.warn(chunk.line_of(i), "user_id", user_id, schema.EXPECT_USER_ID)
                    continue
                line = chunk.line_of(i)
                seen = first_line.setdefault(user_id, line)
                if seen != line:
                    raise DataError(
                        Issue(table.name, line, "user_id", user_id, f"unique user ids (already on line {seen})")
                    )
                kept_rows.append((row, line))
            _append_users(columns, kept_rows, layout, findings, shared, limits.max_list_entries)
        findings.finish()
    return Users(
        ids=columns["user_id"],
        lang=columns["lang"],
        city=columns["city"],
        country=columns["country"],
        interests=columns["interests"],
        asp_position=columns["asp_position"],
        positions=columns["positions"],
        organisations=columns["organisations"],
        badges=columns["badges"],
        competencies=columns["competencies"],
        description=columns["description"],
    )


# Columns whose values repeat across users: one string object per distinct value keeps 200k users small.
_SHARED_TEXT = frozenset({"lang", "city", "country"})


def _append_users(
    columns: dict[str, list],
    rows: list[tuple[list[str], int]],
    layout: schema.UserLayout,
    findings: FileFindings,
    shared: dict[str, dict[str, str]],
    max_entries: int,
) -> None:
    n = len(rows)
    for column, at in layout.positions.items():
        if column == "competencies_scale":
            continue
        if at is None:
            values: list = [[] for _ in range(n)] if column in schema.USER_LIST_COLUMNS else [""] * n
        elif column in schema.USER_LIST_COLUMNS:
            share = shared.setdefault(column, {}).setdefault
            values = [[share(v, v) for v in schema.parse_list(row[at], max_entries)] for row, _ in rows]
            _note_truncated(rows, at, column, max_entries, findings)
        elif column in _SHARED_TEXT:
            share = shared.setdefault(column, {}).setdefault
            values = [share(row[at], row[at]) for row, _ in rows]
        else:
            values = [row[at] for row, _ in rows]
        columns[column].extend(values)
    at = layout.positions["competencies_scale"]
    competencies = columns["competencies"]
    if at is None:
        competencies.extend({} for _ in range(n))
        return
    _note_truncated(rows, at, "competencies_scale", max_entries, findings)
    for row, line in rows:
        cell = row[at]
        if not cell:
            competencies.append({})
            continue
        parsed, bad = schema.parse_competencies(cell, max_entries)
        for entry in bad:
            findings.warn(line, "competencies_scale", entry, schema.EXPECT_COMPETENCY + " (entry ignored)", skip=False)
        competencies.append(parsed)


def _note_truncated(
    rows: list[tuple[list[str], int]], at: int, column: str, max_entries: int, findings: FileFindings
) -> None:
    """Warn (row kept) for each cell holding more than `max_entries` `|`-joined entries: only the first were read."""
    for row, line in rows:
        cell = row[at]
        if len(cell) >= max_entries and schema.over_limit(cell, max_entries):
            findings.report.truncated_cells += 1
            findings.warn(
                line,
                column,
                f"{cell.count(schema.LIST_SEPARATOR) + 1} entries",
                f"at most {max_entries} entries per cell (ML_MAX_LIST_ENTRIES); the first {max_entries} were kept",
                skip=False,
            )


# ---------------------------------------------------------------- item_data


def load_items(path: Path, report: LoadReport, name: str | None = None, *, limits: InputLimits = InputLimits()) -> Items:
    """item_data in file order; malformed ids, type columns or tag values skip the row, repeated ids fail the file.

    A newer item type (spec §11 item 16) is accepted when its one-hot column is in the header (see
    docs/data-validation.md); its items get type codes from 5 on, in the order of the columns.
    """
    with CsvTable(path, name, max_record_bytes=limits.max_record_bytes) as table:
        findings = FileFindings(report, table.name)
        if table.header is None:
            findings.finish()
            return Items.empty()
        header = table.header
        layout = schema.item_layout(table.name, header, limits.max_tag_columns)
        candidates = {header[c] for c in layout.type_candidates}
        findings.unknown_columns([c for c in layout.unknown if c not in candidates])  # candidates: see NewerTypes
        if layout.ignored_tags:
            report.ignored_tag_columns += len(layout.ignored_tags)
            findings.warn(
                1,
                layout.ignored_tags[0],
                f"{len(layout.tag_columns) + len(layout.ignored_tags)} topic_/tag_ columns",
                f"at most {limits.max_tag_columns} (ML_MAX_TAG_COLUMNS); the {len(layout.ignored_tags)} columns from "
                f"{layout.ignored_tags[0]!r} on were ignored",
                skip=False,
            )
        numeric = layout.types + layout.tag_columns
        numeric_names = [header[c] for c in numeric]
        cells = itemgetter(*numeric)
        newer = NewerTypes(header, layout.type_candidates)
        ids: list[str] = []
        documents: list[str] = []
        lines: list[int] = []
        type_parts: list[np.ndarray] = []
        tag_parts: list[np.ndarray] = []
        first_line: dict[str, int] = {}
        for chunk in _parts(table, findings):
            rows, where = _well_formed(chunk, len(header), findings)
            if not rows:
                continue
            flags, ok = _zero_one_matrix(["".join(cells(row)) for row in rows], len(numeric))
            keep = np.ones(len(rows), bool) if ok is None else ok.copy()
            if ok is not None:
                for k in np.flatnonzero(~ok):
                    row = rows[k]
                    j = next(j for j, c in enumerate(numeric) if row[c] not in schema.RATINGS)
                    findings.warn(chunk.line_of(where[k]), numeric_names[j], row[numeric[j]], schema.EXPECT_ZERO_ONE)
            onehot = flags[:, :5]
            hot_count = onehot.sum(axis=1)
            hot_type = onehot.argmax(axis=1).astype(np.int32)
            for k, row in enumerate(rows):
                if not keep[k]:
                    continue
                item_id = row[layout.item_id]
                line = chunk.line_of(where[k])
                prefix_type = item_type_of(item_id)
                if prefix_type is None:
                    candidate = newer.candidate_of(item_id)
                    if candidate is None:
                        findings.warn(line, "item_id", item_id, schema.EXPECT_ITEM_ID)
                    elif hot_count[k] != 0:
                        findings.warn(line, "", ",".join(row[c] for c in layout.types), newer.expect_one_hot(candidate))
                    else:
                        hot_type[k] = len(ITEM_TYPES) + candidate
                        prefix_type = int(hot_type[k])
                elif hot_count[k] != 1:
                    findings.warn(line, "", ",".join(row[c] for c in layout.types), schema.EXPECT_ONE_HOT)
                    prefix_type = None
                elif hot_type[k] != prefix_type:
                    findings.warn(
                        line,
                        ITEM_TYPES[hot_type[k]],
                        "1",
                        f"the 1 in column {ITEM_TYPES[prefix_type]}, the type named by item id {item_id}",
                    )
                    prefix_type = None
                if prefix_type is not None:
                    if not newer.candidates:  # with candidates, repeats are checked once every row is final
                        seen = first_line.setdefault(item_id, line)
                        if seen != line:
                            raise DataError(
                                Issue(table.name, line, "item_id", item_id, f"unique item ids (already on line {seen})")
                            )
                    ids.append(item_id)
                    documents.append(row[layout.document])
                    lines.append(line)
                    newer.keep_row(row)
                    continue
                keep[k] = False
            type_parts.append(hot_type[keep])
            tag_parts.append(flags[keep, 5:])
        type_codes = np.concatenate(type_parts) if type_parts else np.zeros(0, np.int32)
        final = newer.settle(type_codes, lines, findings) if newer.candidates else None
        if final is not None:
            ids = [value for value, kept in zip(ids, final) if kept]
            documents = [value for value, kept in zip(documents, final) if kept]
            check_unique(table.name, ids, [line for line, kept in zip(lines, final) if kept])
        findings.finish()
    if not ids:
        no_tags = sp.csr_matrix((0, len(layout.tag_names)), dtype=np.float32)
        return Items([], np.zeros(0, np.int8), layout.tag_names, no_tags, [], newer.type_names)
    tag_flags = np.concatenate(tag_parts)
    if final is not None:
        tag_flags, type_codes = tag_flags[final], newer.recode(type_codes[final])
    if len(layout.tag_names) != len(layout.tag_columns):  # a tag name repeated in the header: one tag, OR-ed
        merged = np.zeros((tag_flags.shape[0], len(layout.tag_names)), bool)
        for j, tag in enumerate(layout.tag_of_column):
            merged[:, tag] |= tag_flags[:, j]
        tag_flags = merged
    tags = sp.csr_matrix(tag_flags, dtype=np.float32)
    return Items(ids, type_codes.astype(np.int8), layout.tag_names, tags, documents, newer.type_names)


def _zero_one_matrix(joined_rows: list[str], width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows, width) bool matrix of the 0/1 cells, and None when all were valid, else the mask of valid rows."""
    flat = "".join(joined_rows)
    n = len(joined_rows)
    if len(flat) == n * width and set(flat) <= {"0", "1"}:
        return np.frombuffer(flat.encode("ascii"), np.uint8).reshape(n, width) == ord("1"), None
    ok = np.array([len(s) == width and set(s) <= {"0", "1"} for s in joined_rows], bool)
    flags = np.zeros((n, width), bool)
    if ok.any():
        good = "".join(s for s, valid in zip(joined_rows, ok) if valid)
        flags[ok] = np.frombuffer(good.encode("ascii"), np.uint8).reshape(-1, width) == ord("1")
    return flags, ok


# ---------------------------------------------------------------- user_interactions


def load_interactions(
    path: Path,
    user_index: dict[str, int],
    item_index: dict[str, int],
    report: LoadReport,
    name: str | None = None,
    *,
    limits: InputLimits = InputLimits(),
    type_names: Sequence[str] = ITEM_TYPES,
) -> Interactions:
    """Valid rows of known users and items, one per (user, item): the latest timestamp (then the later row) wins.

    `type_names` are item_data's types: an id of one of them that item_data lacks is dropped as an unknown item,
    any other prefix is a defect.
    """
    type_index = type_index_of(type_names)
    with CsvTable(path, name, max_record_bytes=limits.max_record_bytes) as table:
        findings = FileFindings(report, table.name)
        if table.header is None:
            findings.finish()
            return Interactions.empty()
        positions = schema.interaction_layout(table.name, table.header)
        findings.unknown_columns([c for c in table.header if c not in schema.INTERACTION_COLUMNS])
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for chunk in _parts(table, findings):
            rows, where = _well_formed(chunk, len(table.header), findings)
            if rows:
                parts.append(_check_interactions(chunk, rows, where, positions, user_index, item_index, findings, type_index))
        findings.finish()
    if not parts:
        return Interactions.empty()
    user, item, rating, timestamp = (np.concatenate(column) for column in zip(*parts))
    del parts
    winners = _latest_per_pair(user, item, timestamp, max(len(item_index), 1))
    if winners is None:
        return Interactions(user, item, rating, timestamp)
    report.duplicates_collapsed += len(user) - len(winners)
    return Interactions(user[winners], item[winners], rating[winners], timestamp[winners])


def _check_interactions(
    chunk: RowChunk,
    rows: list[list[str]],
    where: list[int],
    positions: list[int],
    user_index: dict[str, int],
    item_index: dict[str, int],
    findings: FileFindings,
    type_index: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(rows)
    columns = list(zip(*rows))
    users, items, ratings, stamps = (columns[p] for p in positions)
    user = np.array(list(map(user_index.get, users, repeat(-1, n))), np.int32)
    item = np.array(list(map(item_index.get, items, repeat(-1, n))), np.int32)
    rating, bad_rating = _ratings(ratings)
    timestamp, bad_timestamp = _timestamps(stamps)

    bad_user = np.zeros(n, bool)
    bad_item = np.zeros(n, bool)
    unknown_user = user < 0
    unknown_item = item < 0
    if unknown_user.any():
        bad_user[unknown_user] = [users[k] == "" for k in np.flatnonzero(unknown_user)]
    if unknown_item.any():
        verdict: dict[str, bool] = {}
        bad_item[unknown_item] = [
            verdict.setdefault(items[k], item_type_of(items[k], type_index) is None) for k in np.flatnonzero(unknown_item)
        ]
    bad = bad_user | bad_item | bad_rating | bad_timestamp
    if bad.any():
        checks = (
            (bad_user, "user_id", users, schema.EXPECT_USER_ID),
            (bad_item, "item_id", items, schema.EXPECT_ITEM_ID),
            (bad_rating, "rating", ratings, schema.EXPECT_RATING),
            (bad_timestamp, "timestamp", stamps, schema.EXPECT_TIMESTAMP),
        )
        for k in np.flatnonzero(bad):
            mask, column, values, expected = next(check for check in checks if check[0][k])
            findings.warn(chunk.line_of(where[k]), column, values[k], expected)
    drop_user = unknown_user & ~bad
    drop_item = unknown_item & ~bad & ~drop_user
    findings.report.dropped_unknown_user += int(drop_user.sum())
    findings.report.dropped_unknown_item += int(drop_item.sum())
    keep = ~(bad | drop_user | drop_item)
    return user[keep], item[keep], rating[keep], timestamp[keep]


def _ratings(cells: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """int8 ratings and the mask of cells that are not exactly `0` or `1` (those read as 0)."""
    n = len(cells)
    if set(cells) <= schema.RATINGS:
        return (np.frombuffer("".join(cells).encode("ascii"), np.uint8) - ord("0")).astype(np.int8), np.zeros(n, bool)
    bad = np.fromiter((c not in schema.RATINGS for c in cells), bool, n)
    return np.fromiter((c == "1" for c in cells), bool, n).astype(np.int8), bad


def _timestamps(cells: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """int64 seconds and the mask of cells that are not a plain non-negative integer (those read as 0)."""
    n = len(cells)
    joined = "".join(cells)
    lengths = set(map(len, cells))
    if joined.isascii() and joined.isdigit() and 0 not in lengths and max(lengths) <= schema.MAX_TIMESTAMP_DIGITS:
        if len(lengths) == 1:  # the usual case, all ten digits: convert every cell at once
            width = len(cells[0])
            digits = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(n, width) - ord("0")
            return digits.astype(np.int64) @ _DIGIT_WEIGHTS[width], np.zeros(n, bool)
        return np.fromiter(map(int, cells), np.int64, n), np.zeros(n, bool)
    ok = np.fromiter(
        (c.isascii() and c.isdigit() and len(c) <= schema.MAX_TIMESTAMP_DIGITS for c in cells), bool, n
    )
    values = np.fromiter((int(c) if good else 0 for c, good in zip(cells, ok)), np.int64, n)
    return values, ~ok


def _latest_per_pair(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray, n_items: int) -> np.ndarray | None:
    """Positions (in file order) of the row kept per (user, item), or None when no pair repeats.

    The latest timestamp wins; on equal timestamps the later row in the file wins.
    """
    pair = user.astype(np.int64) * n_items + item
    order = np.argsort(pair)
    sorted_pair = pair[order]
    same_as_next = sorted_pair[1:] == sorted_pair[:-1]
    if not same_as_next.any():
        return None
    del sorted_pair
    in_group = np.zeros(len(pair), bool)
    in_group[1:] |= same_as_next
    in_group[:-1] |= same_as_next
    # Only rows of repeated pairs need the slower stable ordering by pair, then timestamp, then file position.
    contested = np.sort(order[in_group])
    del order, in_group
    ranked = contested[np.argsort(timestamp[contested], kind="stable")]
    ranked = ranked[np.argsort(pair[ranked], kind="stable")]
    ranked_pair = pair[ranked]
    last = np.ones(len(ranked), bool)
    last[:-1] = ranked_pair[1:] != ranked_pair[:-1]
    keep = np.ones(len(pair), bool)
    keep[contested] = False
    keep[ranked[last]] = True
    return np.flatnonzero(keep)
