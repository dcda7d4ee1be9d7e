"""Newer Totara item types (spec §11 item 16): an extra one-hot column in item_data makes its prefix a type."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ml_service.data.features import build_features
from ml_service.data.load import load_tenant
from ml_service.data.schema import EXPECT_ITEM_ID, EXPECT_ZERO_ONE
from ml_service.data.tenant import ITEM_TYPES, type_families
from tests.data.test_load import USERS, load_error, warnings_of, write_tenant

# Certification's column comes first in the header, so it gets code 5 and program code 6.
NEWER = ("totara_certification", "totara_program")
HEADER = ["item_id", *ITEM_TYPES, "totara_certification", "topic_maths", "totara_program", "document"]


def row(item_id: str, type_name: str, *, maths: int = 0, document: str = "a document") -> list[object]:
    hot = [int(t == type_name) for t in (*ITEM_TYPES, "totara_certification")]
    return [item_id, *hot, maths, int(type_name == "totara_program"), document]


ITEMS = [
    row("container_course1", "container_course"),
    row("totara_program7", "totara_program", maths=1),
    row("engage_article3", "engage_article"),
    row("totara_certification8", "totara_certification"),
    row("totara_program9", "totara_program"),
]


def test_a_newer_type_with_its_column_is_its_own_type_and_family(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    interactions = [
        ["10", "totara_program7", 1, 1600000000],
        ["11", "totara_certification8", 0, 1600000001],
        ["12", "totara_program99", 1, 1600000002],  # a program item_data lacks: dropped as an unknown item
    ]
    with caplog.at_level(logging.INFO, logger="ml_service.data"):
        data = load_tenant(write_tenant(tmp_path, interactions, USERS, ITEMS, item_header=HEADER))
    assert data.items.type_names == ITEM_TYPES + NEWER
    assert data.items.ids == ["container_course1", "totara_program7", "engage_article3", "totara_certification8", "totara_program9"]
    assert data.items.type_index.dtype == np.int8 and data.items.type_index.tolist() == [0, 6, 2, 5, 6]
    assert data.items.tag_names == ["topic_maths"] and data.items.tags.toarray().ravel().tolist() == [0, 1, 0, 0, 0]
    assert data.interactions.item.tolist() == [1, 3]
    report = data.report.as_dict()
    assert report["new_item_types"] == {"totara_certification": 1, "totara_program": 2}
    assert report["warning_count"] == 0 and report["dropped_unknown_item"] == 1
    logged = [r.getMessage() for r in caplog.records if "newer item types" in r.getMessage()]
    assert logged == ["item_data_0.csv: newer item types accepted, each its own family: totara_certification (1 items), totara_program (2 items)"]
    # articles and microlearning share a family, every newer type is its own
    assert type_families(data.items.type_names) == (0, 1, 2, 2, 4, 5, 6)
    # the type columns are item features in code order, before the tags
    features = build_features(data, "partial")
    assert features.item_names == [*ITEM_TYPES, *NEWER, "topic_maths"]
    assert features.item is not None and features.item.toarray()[:, 5:7].tolist() == [[0, 0], [0, 1], [0, 0], [1, 0], [0, 1]]


def test_an_unknown_prefix_without_its_column_is_still_the_precise_error(tmp_path: Path) -> None:
    header = ["item_id", *ITEM_TYPES, "topic_maths", "document"]
    items = [[*r[:6], r[7], r[9]] for r in ITEMS]  # the same rows without the two newer columns
    interactions = [["10", "totara_program7", 1, 1600000000], ["10", "container_course1", 1, 1600000000]]
    data = load_tenant(write_tenant(tmp_path, interactions, USERS, items, item_header=header))
    assert data.items.type_names == ITEM_TYPES and data.items.ids == ["container_course1", "engage_article3"]
    assert warnings_of(data) == [
        f"item_data_0.csv, line 3, column 'item_id': got 'totara_program7', expected {EXPECT_ITEM_ID}",
        f"item_data_0.csv, line 5, column 'item_id': got 'totara_certification8', expected {EXPECT_ITEM_ID}",
        f"item_data_0.csv, line 6, column 'item_id': got 'totara_program9', expected {EXPECT_ITEM_ID}",
        f"user_interactions_0.csv, line 2, column 'item_id': got 'totara_program7', expected {EXPECT_ITEM_ID}",
    ]
    assert "new_item_types" not in data.report.as_dict()


def test_a_type_like_column_no_id_names_stays_an_ignored_column(tmp_path: Path) -> None:
    header = ["item_id", *ITEM_TYPES, "course_format", "document"]
    items = [["container_course1", 1, 0, 0, 0, 0, "topics", "doc"], ["engage_article2", 0, 0, 1, 0, 0, "", "doc"]]
    data = load_tenant(write_tenant(tmp_path, [], USERS, items, item_header=header))
    assert data.items.ids == ["container_course1", "engage_article2"] and data.items.type_names == ITEM_TYPES
    assert warnings_of(data) == [
        "item_data_0.csv, line 1, column 'course_format': got 'course_format', expected only the columns of the "
        "export contract (column ignored)"
    ]


@pytest.mark.parametrize(
    ("bad_row", "warning"),
    [
        (row("totara_program5", "totara_program")[:3] + [1] + row("x", "")[4:],  # a 1 in engage_article as well
         "line 7: got '0,0,1,0,0', expected only 0 in the columns "),
        (row("engage_article5", "engage_article")[:8] + [1, "doc"],  # an article with a 1 in totara_program
         "got '0,0,1,0,0,0,1', expected exactly one 1 among the type columns container_course, container_workspace, "
         "engage_article, engage_microlearning, totara_playlist, totara_certification, totara_program, in the column "
         "the item id names"),
        (row("totara_program5", "totara_program")[:8] + ["yes", "doc"],
         f"column 'totara_program': got 'yes', expected {EXPECT_ZERO_ONE}"),
    ],
)
def test_a_row_contradicting_the_newer_type_columns_is_skipped(tmp_path: Path, bad_row: Sequence[object], warning: str) -> None:
    data = load_tenant(write_tenant(tmp_path, [], USERS, [*ITEMS, bad_row], item_header=HEADER))
    assert data.items.ids == [r[0] for r in ITEMS]
    assert len(data.report.warnings) == 1 and "line 7" in warnings_of(data)[0] and warning in warnings_of(data)[0]
    assert data.report.skipped_rows == 1


def test_a_repeated_id_of_a_newer_type_fails_the_file(tmp_path: Path) -> None:
    issue = load_error(write_tenant(tmp_path, [], USERS, [*ITEMS, row("totara_program7", "totara_program")], item_header=HEADER))
    assert (issue.file, issue.line, issue.column, issue.value) == ("item_data_0.csv", 7, "item_id", "totara_program7")
    assert issue.expected == "unique item ids (already on line 3)"


def test_a_repeat_of_a_skipped_row_is_not_a_duplicate(tmp_path: Path) -> None:
    broken = row("totara_program9", "totara_program")[:8] + ["2", "doc"]
    data = load_tenant(write_tenant(tmp_path, [], USERS, [broken, *ITEMS], item_header=HEADER))
    assert data.items.ids == [r[0] for r in ITEMS] and data.report.skipped_rows == 1
