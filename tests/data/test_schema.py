"""The CSV contracts: header layouts of the three files, id forms, `|` lists, competencies, the bad-row limit."""

from __future__ import annotations

import pytest

from ml_service.data import schema
from ml_service.data.tenant import ITEM_TYPES, DataError


def test_interaction_layout_follows_the_header_order() -> None:
    assert schema.interaction_layout("ui.csv", ["timestamp", "rating", "item_id", "user_id"]) == [3, 2, 1, 0]


def test_missing_interaction_column_names_file_column_and_expected_header() -> None:
    with pytest.raises(DataError) as caught:
        schema.interaction_layout("user_interactions_0.csv", ["user_id", "item_id", "timestamp"])
    assert str(caught.value) == (
        "user_interactions_0.csv, line 1, column 'rating': got '(missing)', "
        "expected a header with the columns user_id,item_id,rating,timestamp"
    )


def test_repeated_required_column_fails() -> None:
    with pytest.raises(DataError) as caught:
        schema.interaction_layout("ui.csv", ["user_id", "item_id", "rating", "timestamp", "rating"])
    issue = caught.value.issue
    assert (issue.line, issue.column, issue.expected) == (1, "rating", "each column only once in the header")


def test_user_layout_full_form() -> None:
    layout = schema.user_layout("u.csv", list(schema.USER_COLUMNS))
    assert layout.positions == {c: i for i, c in enumerate(schema.USER_COLUMNS)}
    assert layout.unknown == []


def test_user_layout_old_form_leaves_the_other_columns_absent() -> None:
    layout = schema.user_layout("u.csv", ["user_id", "lang"])
    assert layout.positions["user_id"] == 0 and layout.positions["lang"] == 1
    assert all(layout.positions[c] is None for c in schema.USER_COLUMNS[2:])


def test_user_layout_in_between_form_is_an_error_listing_both_forms() -> None:
    with pytest.raises(DataError) as caught:
        schema.user_layout("user_data_0.csv", ["user_id", "lang", "city"])
    issue = caught.value.issue
    assert (issue.file, issue.line, issue.column, issue.value) == ("user_data_0.csv", 1, "country", "(missing)")
    assert issue.expected == (
        "a header with the columns user_id,lang,city,country,interests,asp_position,positions,organisations,"
        "competencies_scale,badges,description (or the older form user_id,lang)"
    )


def test_user_layout_without_user_id() -> None:
    with pytest.raises(DataError) as caught:
        schema.user_layout("user_data_0.csv", ["lang"])
    assert caught.value.issue.column == "user_id"


def test_item_layout_finds_types_dynamic_tags_and_document() -> None:
    header = ["item_id", *ITEM_TYPES, "topic_maths", "tag_python", "extra", "document"]
    layout = schema.item_layout("i.csv", header)
    assert (layout.item_id, layout.types, layout.document) == (0, [1, 2, 3, 4, 5], 9)
    assert (layout.tag_columns, layout.tag_names, layout.unknown) == ([6, 7], ["topic_maths", "tag_python"], ["extra"])


def test_item_layout_repeated_tag_names_share_one_tag() -> None:
    header = ["item_id", *ITEM_TYPES, "topic_a", "topic_b", "topic_a", "document"]
    layout = schema.item_layout("i.csv", header)
    assert layout.tag_names == ["topic_a", "topic_b"]
    assert layout.tag_of_column == [0, 1, 0]


def test_item_layout_without_tags() -> None:
    layout = schema.item_layout("i.csv", ["item_id", *ITEM_TYPES, "document"])
    assert (layout.tag_columns, layout.tag_names) == ([], [])


def test_item_layout_missing_type_column() -> None:
    with pytest.raises(DataError) as caught:
        schema.item_layout("item_data_0.csv", ["item_id", *ITEM_TYPES[:4], "document"])
    assert str(caught.value) == (
        "item_data_0.csv, line 1, column 'totara_playlist': got '(missing)', expected a header with the columns "
        "item_id,container_course,container_workspace,engage_article,engage_microlearning,totara_playlist,"
        "<topic_/tag_ columns>,document"
    )


@pytest.mark.parametrize(
    ("item_id", "valid"),
    [
        ("container_course1", True),
        ("container_workspace22", True),
        ("engage_article3", True),
        ("engage_microlearning4", True),
        ("totara_playlist5", True),
        ("totara_program5", False),
        ("engage_article", False),
        ("engage_article12x", False),
        ("12", False),
        ("", False),
    ],
)
def test_valid_item_id(item_id: str, valid: bool) -> None:
    assert schema.valid_item_id(item_id) is valid


@pytest.mark.parametrize(
    ("cell", "values"), [("", []), ("a", ["a"]), ("1|22|3", ["1", "22", "3"]), ("a||b|", ["a", "b"])]
)
def test_parse_list(cell: str, values: list[str]) -> None:
    assert schema.parse_list(cell) == values


def test_parse_competencies() -> None:
    assert schema.parse_competencies("") == ({}, [])
    assert schema.parse_competencies("123:45|7:|9:2.5") == ({"123": 45.0, "7": 0.0, "9": 2.5}, [])
    assert schema.parse_competencies("4:1|4:3|4:2") == ({"4": 3.0}, [])  # repeats keep the maximum
    assert schema.parse_competencies("5|:3|6:x|8:nan|2:1") == ({"2": 1.0}, ["5", ":3", "6:x", "8:nan"])


@pytest.mark.parametrize(
    ("bad", "rows", "fails"),
    [(0, 0, False), (5, 10, False), (6, 100, True), (5, 100, False), (10, 200, False), (11, 200, True)],
)
def test_too_many_bad_rows(bad: int, rows: int, fails: bool) -> None:
    assert schema.too_many_bad_rows(bad, rows) is fails
