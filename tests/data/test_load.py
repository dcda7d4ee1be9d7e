"""load_tenant: a tenant's three export files become TenantData, every defect skipped with a warning or failing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ml_service.data.csvio import write_php_csv
from ml_service.data.load import load_tenant
from ml_service.data.schema import EXPECT_ITEM_ID, EXPECT_ONE_HOT, EXPECT_TIMESTAMP, USER_COLUMNS
from ml_service.data.tenant import ITEM_TYPES, DataError, Issue, TenantData
from ml_service.source.base import TenantFiles

INTERACTION_HEADER = ["user_id", "item_id", "rating", "timestamp"]
ITEM_HEADER = ["item_id", *ITEM_TYPES, "topic_maths", "tag_python", "document"]


def user_row(user_id: str, **values: str) -> list[str]:
    row = {c: "" for c in USER_COLUMNS} | {"user_id": user_id, "lang": "en"} | values
    return [row[c] for c in USER_COLUMNS]


def item_row(item_id: str, type_name: str, tags: Sequence[int] = (0, 0), document: str = "a document") -> list[object]:
    return [item_id, *(int(t == type_name) for t in ITEM_TYPES), *tags, document]


USERS = [user_row("10"), user_row("11"), user_row("12")]
ITEMS = [
    item_row("container_course1", "container_course"),
    item_row("container_workspace2", "container_workspace"),
    item_row("engage_article3", "engage_article"),
    item_row("engage_microlearning4", "engage_microlearning"),
    item_row("totara_playlist5", "totara_playlist"),
]


def write_tenant(
    folder: Path,
    interactions: Sequence[Sequence[object]] = (),
    users: Sequence[Sequence[object]] = USERS,
    items: Sequence[Sequence[object]] = ITEMS,
    user_header: Sequence[str] = USER_COLUMNS,
    item_header: Sequence[str] = ITEM_HEADER,
    interaction_header: Sequence[str] = INTERACTION_HEADER,
) -> TenantFiles:
    files = TenantFiles(
        "0", folder / "user_interactions_0.csv", folder / "user_data_0.csv", folder / "item_data_0.csv"
    )
    write_php_csv(files.user_data, user_header, users)
    write_php_csv(files.item_data, item_header, items)
    write_php_csv(files.user_interactions, interaction_header, interactions)
    return files


def load_error(files: TenantFiles) -> Issue:
    with pytest.raises(DataError) as caught:
        load_tenant(files)
    return caught.value.issue


def warnings_of(data: TenantData) -> list[str]:
    return [str(w) for w in data.report.warnings]


# ---------------------------------------------------------------- a clean tenant


def test_clean_tenant_fills_users_items_and_interactions(tmp_path: Path) -> None:
    users = [
        user_row(
            "10",
            city="New Plymouth",
            country="NZ",
            interests="5|6",
            asp_position="3",
            positions="7|8",
            organisations="9",
            competencies_scale="123:45|7:",
            badges="1|2",
            description='He said "hi", twice\nthen left',
        ),
        user_row("11", lang="fr"),
    ]
    items = [
        item_row("engage_article3", "engage_article", (1, 0), "Intro\nwith a second line, and C:\\path\\"),
        item_row("container_course1", "container_course", (0, 1)),
        item_row("totara_playlist5", "totara_playlist", (1, 1), ""),
    ]
    interactions = [["11", "container_course1", 1, 1600000000], ["10", "engage_article3", 0, 1600000100]]
    data = load_tenant(write_tenant(tmp_path, interactions, users, items))

    assert data.tenant == "0"
    assert data.users.ids == ["10", "11"]
    assert data.users.lang == ["en", "fr"]
    assert data.users.city == ["New Plymouth", ""]
    assert data.users.country == ["NZ", ""]
    assert data.users.interests == [["5", "6"], []]
    assert data.users.asp_position == [["3"], []]
    assert data.users.positions == [["7", "8"], []]
    assert data.users.organisations == [["9"], []]
    assert data.users.badges == [["1", "2"], []]
    assert data.users.competencies == [{"123": 45.0, "7": 0.0}, {}]
    assert data.users.description == ['He said "hi", twice\nthen left', ""]

    assert data.items.ids == ["engage_article3", "container_course1", "totara_playlist5"]
    assert data.items.type_index.dtype == np.int8
    assert data.items.type_index.tolist() == [2, 0, 4]
    assert data.items.tag_names == ["topic_maths", "tag_python"]
    assert data.items.tags.dtype == np.float32
    assert data.items.tags.toarray().tolist() == [[1, 0], [0, 1], [1, 1]]
    assert data.items.documents == ["Intro\nwith a second line, and C:\\path\\", "a document", ""]

    inter = data.interactions
    assert (inter.user.dtype, inter.item.dtype, inter.rating.dtype, inter.timestamp.dtype) == (
        np.int32,
        np.int32,
        np.int8,
        np.int64,
    )
    assert inter.user.tolist() == [1, 0]
    assert inter.item.tolist() == [1, 0]
    assert inter.rating.tolist() == [1, 0]
    assert inter.timestamp.tolist() == [1600000000, 1600000100]
    assert data.report.as_dict() == {
        "rows_read": {"user_data_0.csv": 2, "item_data_0.csv": 3, "user_interactions_0.csv": 2},
        "warning_count": 0,
        "warnings": [],
        "skipped_rows": 0,
        "dropped_unknown_user": 0,
        "dropped_unknown_item": 0,
        "duplicates_collapsed": 0,
        "truncated_cells": 0,
        "ignored_tag_columns": 0,
    }


def test_all_five_prefixes_are_items_of_their_type(tmp_path: Path) -> None:
    interactions = [["10", row[0], 1, 5] for row in ITEMS]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert data.items.type_index.tolist() == [0, 1, 2, 3, 4]
    assert data.interactions.item.tolist() == [0, 1, 2, 3, 4]


def test_timestamps_of_different_lengths(tmp_path: Path) -> None:
    interactions = [["10", "engage_article3", 0, 0], ["11", "engage_article3", 0, 7], ["12", "engage_article3", 0, 1700000000]]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert data.interactions.timestamp.tolist() == [0, 7, 1700000000]


def test_bom_in_every_file_is_tolerated(tmp_path: Path) -> None:
    files = write_tenant(tmp_path, [["10", "engage_article3", 1, 5]])
    for path in (files.user_data, files.item_data, files.user_interactions):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = load_tenant(files)
    assert (data.n_users, data.n_items, len(data.interactions)) == (3, 5, 1)


# ---------------------------------------------------------------- empty and older exports


def test_zero_byte_files_are_an_empty_tenant(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    for path in (files.user_data, files.item_data, files.user_interactions):
        path.write_bytes(b"")
    data = load_tenant(files)
    assert (data.n_users, data.n_items, len(data.interactions)) == (0, 0, 0)
    assert data.items.tags.shape == (0, 0)
    assert data.report.rows_read == {"user_data_0.csv": 0, "item_data_0.csv": 0, "user_interactions_0.csv": 0}


def test_header_only_files_are_an_empty_tenant(tmp_path: Path) -> None:
    data = load_tenant(write_tenant(tmp_path, [], users=[], items=[]))
    assert (data.n_users, data.n_items, len(data.interactions)) == (0, 0, 0)
    assert data.items.tag_names == ["topic_maths", "tag_python"]
    assert data.items.tags.shape == (0, 2)
    assert data.interaction_matrix().shape == (0, 0)


def test_old_user_data_with_only_user_id_and_lang(tmp_path: Path) -> None:
    files = write_tenant(tmp_path, [["7", "engage_article3", 1, 5]], users=[["7", "en"], ["8", "de"]], user_header=["user_id", "lang"])
    data = load_tenant(files)
    assert data.users.ids == ["7", "8"]
    assert data.users.lang == ["en", "de"]
    assert data.users.city == ["", ""] and data.users.description == ["", ""]
    assert data.users.interests == [[], []] and data.users.badges == [[], []]
    assert data.users.competencies == [{}, {}]
    assert data.interactions.user.tolist() == [0]


def test_all_tags_as_topic_columns_and_any_number_of_them(tmp_path: Path) -> None:
    header = ["item_id", *ITEM_TYPES, "topic_a", "topic_b", "topic_c", "document"]
    items = [item_row("engage_article3", "engage_article", (0, 1, 1)), item_row("container_course1", "container_course", (1, 0, 0))]
    data = load_tenant(write_tenant(tmp_path, items=items, item_header=header))
    assert data.items.tag_names == ["topic_a", "topic_b", "topic_c"]
    assert data.items.tags.toarray().tolist() == [[0, 1, 1], [1, 0, 0]]


def test_no_tag_columns(tmp_path: Path) -> None:
    header = ["item_id", *ITEM_TYPES, "document"]
    items = [["engage_article3", 0, 0, 1, 0, 0, "doc"]]
    data = load_tenant(write_tenant(tmp_path, items=items, item_header=header))
    assert data.items.tags.shape == (1, 0)


def test_repeated_tag_column_is_one_tag(tmp_path: Path) -> None:
    header = ["item_id", *ITEM_TYPES, "topic_a", "topic_b", "topic_a", "document"]
    items = [item_row("engage_article3", "engage_article", (0, 1, 1)), item_row("container_course1", "container_course", (0, 0, 0))]
    data = load_tenant(write_tenant(tmp_path, items=items, item_header=header))
    assert data.items.tag_names == ["topic_a", "topic_b"]
    assert data.items.tags.toarray().tolist() == [[1, 1], [0, 0]]


def test_unknown_column_is_ignored_with_a_warning(tmp_path: Path) -> None:
    files = write_tenant(
        tmp_path, [["10", "engage_article3", 1, 5, "x"]], interaction_header=[*INTERACTION_HEADER, "source"]
    )
    data = load_tenant(files)
    assert len(data.interactions) == 1
    assert warnings_of(data) == [
        "user_interactions_0.csv, line 1, column 'source': got 'source', "
        "expected only the columns of the export contract (column ignored)"
    ]
    assert (data.report.warning_count, data.report.skipped_rows) == (1, 0)


# ---------------------------------------------------------------- interactions: dropping and collapsing


def test_unknown_users_and_items_are_dropped_and_counted(tmp_path: Path) -> None:
    interactions = [
        ["10", "engage_article3", 1, 5],
        ["99", "engage_article3", 1, 5],  # user not in user_data
        ["10", "engage_article77", 1, 5],  # item not in item_data
        ["98", "totara_playlist66", 1, 5],  # both unknown: counted once, as an unknown user
    ]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert len(data.interactions) == 1
    assert (data.report.dropped_unknown_user, data.report.dropped_unknown_item) == (2, 1)
    assert (data.report.warning_count, data.report.skipped_rows) == (0, 0)
    assert data.report.rows_read["user_interactions_0.csv"] == 4


def test_duplicates_collapse_to_the_latest_row(tmp_path: Path) -> None:
    interactions = [
        ["10", "engage_article3", 1, 300],
        ["11", "engage_article3", 0, 50],
        ["10", "engage_article3", 0, 900],  # latest for (10, article3): wins
        ["10", "engage_article3", 1, 100],
        ["12", "totara_playlist5", 0, 70],
        ["12", "totara_playlist5", 1, 70],  # same timestamp: the later row wins
    ]
    data = load_tenant(write_tenant(tmp_path, interactions))
    inter = data.interactions
    rows = sorted(zip(inter.user.tolist(), inter.item.tolist(), inter.rating.tolist(), inter.timestamp.tolist()))
    assert rows == [(0, 2, 0, 900), (1, 2, 0, 50), (2, 4, 1, 70)]
    assert data.report.duplicates_collapsed == 3
    # surviving rows stay in file order of the winning rows
    assert inter.timestamp.tolist() == [50, 900, 70]


def test_duplicate_of_a_dropped_row_is_not_counted_as_collapsed(tmp_path: Path) -> None:
    interactions = [["10", "engage_article3", 1, 300], ["10", "engage_article3", 7, 900]]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert data.interactions.timestamp.tolist() == [300]
    assert (data.report.duplicates_collapsed, data.report.skipped_rows) == (0, 1)


# ---------------------------------------------------------------- interactions: row-level defects


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["10", "engage_article3", "2", "5"], "line 3, column 'rating': got '2', expected 0 or 1"),
        (["10", "engage_article3", "", "5"], "line 3, column 'rating': got '', expected 0 or 1"),
        (["10", "engage_article3", "yes", "5"], "line 3, column 'rating': got 'yes', expected 0 or 1"),
        (["10", "engage_article3", "1", "-5"], f"line 3, column 'timestamp': got '-5', expected {EXPECT_TIMESTAMP}"),
        (["10", "engage_article3", "1", "soon"], f"line 3, column 'timestamp': got 'soon', expected {EXPECT_TIMESTAMP}"),
        (["10", "engage_article3", "1", "1.5"], f"line 3, column 'timestamp': got '1.5', expected {EXPECT_TIMESTAMP}"),
        (["10", "engage_article3", "1", ""], f"line 3, column 'timestamp': got '', expected {EXPECT_TIMESTAMP}"),
        (["10", "totara_program3", "1", "5"], f"line 3, column 'item_id': got 'totara_program3', expected {EXPECT_ITEM_ID}"),
        (["10", "engage_article", "1", "5"], f"line 3, column 'item_id': got 'engage_article', expected {EXPECT_ITEM_ID}"),
        (["", "engage_article3", "1", "5"], "line 3, column 'user_id': got '', expected a non-empty user id"),
        (["10", "engage_article3", "1"], "line 3: got '3 fields', expected 4 fields as in the header"),
        (["10", "engage_article3", "1", "5", "6"], "line 3: got '5 fields', expected 4 fields as in the header"),
    ],
)
def test_bad_interaction_row_is_skipped_with_a_precise_warning(tmp_path: Path, row: list[str], message: str) -> None:
    interactions = [["11", "container_course1", 1, 1], row, ["12", "totara_playlist5", 0, 2]]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert data.interactions.user.tolist() == [1, 2]
    assert warnings_of(data) == [f"user_interactions_0.csv, {message}"]
    assert data.report.warnings[0].severity == "warning"
    assert (data.report.warning_count, data.report.skipped_rows) == (1, 1)
    assert data.report.rows_read["user_interactions_0.csv"] == 3


def test_first_defect_in_column_order_is_reported(tmp_path: Path) -> None:
    interactions = [["10", "nope", "9", "-1"]]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert warnings_of(data) == [f"user_interactions_0.csv, line 2, column 'item_id': got 'nope', expected {EXPECT_ITEM_ID}"]


def test_warning_lines_are_physical_after_multiline_records(tmp_path: Path) -> None:
    header = [*INTERACTION_HEADER, "note"]
    interactions = [
        ["10", "engage_article3", 1, 5, "first\nsecond\nthird"],
        ["11", "engage_article3", 3, 5, "x"],  # starts on line 5
    ]
    data = load_tenant(write_tenant(tmp_path, interactions, interaction_header=header))
    assert data.report.warnings[-1] == Issue("user_interactions_0.csv", 5, "rating", "3", "0 or 1", "warning")


def test_only_the_first_twenty_warnings_of_a_kind_are_kept_but_all_counted(tmp_path: Path) -> None:
    good = [["10", "engage_article3", 1, t] for t in range(1000)]
    bad = [["11", "engage_article3", 5, t] for t in range(25)] + [["11", "engage_article3", 1, "x"] for _ in range(3)]
    data = load_tenant(write_tenant(tmp_path, good + bad))
    kinds = [(w.column, w.line) for w in data.report.warnings]
    assert kinds == [("rating", 1002 + k) for k in range(20)] + [("timestamp", 1027 + k) for k in range(3)]
    assert (data.report.warning_count, data.report.skipped_rows) == (28, 28)


# ---------------------------------------------------------------- the bad-row limit


def test_just_under_the_bad_row_limit_loads(tmp_path: Path) -> None:
    rows = [["10", "engage_article3", 1, t] for t in range(190)] + [["10", "engage_article3", 2, 1]] * 10
    data = load_tenant(write_tenant(tmp_path, rows))  # 10 of 200 = 5 %: allowed
    assert data.report.skipped_rows == 10


def test_more_than_five_percent_bad_rows_fails_the_file(tmp_path: Path) -> None:
    rows = [["10", "engage_article3", 1, t] for t in range(189)] + [["10", "engage_article3", 2, 1]] * 11
    issue = load_error(write_tenant(tmp_path, rows))
    assert (issue.file, issue.line, issue.column, issue.severity) == ("user_interactions_0.csv", 0, "", "error")
    assert issue.value == "11 of 200 rows defective"
    assert issue.expected == (
        "at most 5 % defective rows (or 5); first: "
        "user_interactions_0.csv, line 191, column 'rating': got '2', expected 0 or 1"
    )


def test_small_file_with_a_few_bad_rows_loads(tmp_path: Path) -> None:
    rows = [["10", "engage_article3", "x", 1]] * 5 + [["10", "engage_article3", 1, 2]]
    data = load_tenant(write_tenant(tmp_path, rows))  # 5 of 6 bad, but within the allowance of 5 rows
    assert len(data.interactions) == 1


def test_wrong_field_count_in_most_rows_fails_the_file(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    files.user_interactions.write_text("user_id,item_id,rating,timestamp\n" + "10;engage_article3;1;5\n" * 50)
    issue = load_error(files)
    assert issue.value == "50 of 50 rows defective"
    assert issue.expected.endswith("first: user_interactions_0.csv, line 2: got '1 fields', expected 4 fields as in the header")


# ---------------------------------------------------------------- file-level failures


def test_missing_column_names_file_column_and_expected_columns(tmp_path: Path) -> None:
    files = write_tenant(tmp_path, [["10", "engage_article3", 5]], interaction_header=["user_id", "item_id", "timestamp"])
    assert str(load_error(files)) == (
        "user_interactions_0.csv, line 1, column 'rating': got '(missing)', "
        "expected a header with the columns user_id,item_id,rating,timestamp"
    )


def test_missing_document_column_in_item_data(tmp_path: Path) -> None:
    header = ITEM_HEADER[:-1]
    issue = load_error(write_tenant(tmp_path, items=[row[:-1] for row in ITEMS], item_header=header))
    assert (issue.file, issue.line, issue.column) == ("item_data_0.csv", 1, "document")


def test_truncated_file_fails_with_the_line_of_the_cut_record(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    text = files.item_data.read_text()
    files.item_data.write_text(text + 'engage_article9,0,0,1,0,0,0,0,"A document cut in the mid')
    issue = load_error(files)
    assert issue == Issue(
        "item_data_0.csv",
        7,
        "",
        "end of file inside a quoted field",
        'a closing quote (") before the end of the file; the file looks truncated',
    )


def test_invalid_utf8_fails_the_file_with_line_and_offset(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    files.user_data.write_bytes(files.user_data.read_bytes() + b"13,\xff\xfe,,,,,,,,,\n")
    issue = load_error(files)
    assert (issue.file, issue.line, issue.expected) == ("user_data_0.csv", 5, "UTF-8 text")
    offset = len(files.user_data.read_bytes()) - len(b"13,\xff\xfe,,,,,,,,,\n") + 3
    assert issue.value == f"bytes b'\\xff' at byte offset {offset}"


def test_duplicate_user_id_fails_the_file(tmp_path: Path) -> None:
    issue = load_error(write_tenant(tmp_path, users=[user_row("10"), user_row("11"), user_row("10")]))
    assert str(issue) == "user_data_0.csv, line 4, column 'user_id': got '10', expected unique user ids (already on line 2)"


def test_duplicate_item_id_fails_the_file(tmp_path: Path) -> None:
    items = [*ITEMS, item_row("engage_article3", "engage_article")]
    issue = load_error(write_tenant(tmp_path, items=items))
    assert str(issue) == (
        "item_data_0.csv, line 7, column 'item_id': got 'engage_article3', expected unique item ids (already on line 4)"
    )


def test_missing_file_fails(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    files.item_data.unlink()
    assert load_error(files) == Issue("item_data_0.csv", 0, "", "No such file or directory", "a readable file")


# ---------------------------------------------------------------- user_data and item_data row defects


def test_empty_user_id_is_skipped(tmp_path: Path) -> None:
    data = load_tenant(write_tenant(tmp_path, users=[user_row("10"), user_row(""), user_row("12")]))
    assert data.users.ids == ["10", "12"]
    assert warnings_of(data) == ["user_data_0.csv, line 3, column 'user_id': got '', expected a non-empty user id"]


def test_malformed_competency_entry_is_ignored_and_the_user_kept(tmp_path: Path) -> None:
    users = [user_row("10", competencies_scale="5:2|oops|6:x|7:")]
    data = load_tenant(write_tenant(tmp_path, users=users))
    assert data.users.competencies == [{"5": 2.0, "7": 0.0}]
    expected = "competencyid:proficiency with a numeric (or empty) proficiency (entry ignored)"
    assert warnings_of(data) == [
        f"user_data_0.csv, line 2, column 'competencies_scale': got 'oops', expected {expected}",
        f"user_data_0.csv, line 2, column 'competencies_scale': got '6:x', expected {expected}",
    ]
    assert (data.report.warning_count, data.report.skipped_rows) == (2, 0)


def test_user_row_with_wrong_field_count_is_skipped(tmp_path: Path) -> None:
    files = write_tenant(tmp_path)
    files.user_data.write_text(files.user_data.read_text() + "13,en\n")
    data = load_tenant(files)
    assert data.users.ids == ["10", "11", "12"]
    assert warnings_of(data) == ["user_data_0.csv, line 5: got '2 fields', expected 11 fields as in the header"]


def test_item_with_unknown_prefix_is_skipped(tmp_path: Path) -> None:
    items = [*ITEMS, ["totara_program6", 1, 0, 0, 0, 0, 0, 0, "x"]]
    data = load_tenant(write_tenant(tmp_path, [["10", "totara_program6", 1, 5]], items=items))
    assert data.items.ids == [row[0] for row in ITEMS]
    assert warnings_of(data) == [
        f"item_data_0.csv, line 7, column 'item_id': got 'totara_program6', expected {EXPECT_ITEM_ID}",
        f"user_interactions_0.csv, line 2, column 'item_id': got 'totara_program6', expected {EXPECT_ITEM_ID}",
    ]


def test_item_whose_type_column_disagrees_with_its_prefix_is_skipped(tmp_path: Path) -> None:
    items = [*ITEMS, item_row("engage_article6", "container_course")]
    data = load_tenant(write_tenant(tmp_path, [["10", "engage_article6", 1, 5]], items=items))
    assert "engage_article6" not in data.items.ids
    assert data.report.warnings[0] == Issue(
        "item_data_0.csv",
        7,
        "container_course",
        "1",
        "the 1 in column engage_article, the type named by item id engage_article6",
        "warning",
    )
    assert data.report.dropped_unknown_item == 1  # its interactions go with it


@pytest.mark.parametrize("onehot", [(0, 0, 0, 0, 0), (0, 0, 1, 1, 0)])
def test_item_without_exactly_one_type_is_skipped(tmp_path: Path, onehot: tuple[int, ...]) -> None:
    items = [*ITEMS, ["engage_article6", *onehot, 0, 0, "x"]]
    data = load_tenant(write_tenant(tmp_path, items=items))
    assert data.n_items == 5
    assert warnings_of(data) == [
        f"item_data_0.csv, line 7: got '{','.join(map(str, onehot))}', expected {EXPECT_ONE_HOT}"
    ]


@pytest.mark.parametrize("value", ["2", "", "yes"])
def test_item_with_a_bad_tag_value_is_skipped(tmp_path: Path, value: str) -> None:
    items = [*ITEMS, ["engage_article6", 0, 0, 1, 0, 0, 0, value, "x"]]
    data = load_tenant(write_tenant(tmp_path, items=items))
    assert data.n_items == 5
    assert data.items.tags.shape == (5, 2)
    assert warnings_of(data) == [f"item_data_0.csv, line 7, column 'tag_python': got '{value}', expected 0 or 1"]


def test_positive_matrix_uses_the_loaded_indices(tmp_path: Path) -> None:
    interactions = [["12", "totara_playlist5", 1, 5], ["10", "engage_article3", 0, 5]]
    data = load_tenant(write_tenant(tmp_path, interactions))
    assert data.positive_matrix().toarray()[2].tolist() == [0, 0, 0, 0, 1]
    assert data.interaction_matrix().nnz == 2
