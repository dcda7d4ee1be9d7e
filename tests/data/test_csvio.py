"""The low-level reader: PHP fputcsv round trips, physical line numbers, encoding and truncation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.data.csvio import BadRecord, CsvTable, php_csv_line, read_header_and_rows, write_php_csv
from ml_service.data.tenant import DataError

# Values that stress PHP's escape-character rules; each must come back unchanged.
TRICKY = [
    "plain",
    "",
    "two words",
    'say "hi"',
    "a\\b",
    "C:\\temp\\",  # backslash at the end of a field: PHP writes "C:\temp\"
    "a\\\\",  # two backslashes at the end
    'a\\"b',  # backslash before a quote: PHP writes "a\"b" (quote not doubled)
    'a\\\\"b',  # two backslashes before a quote: still not doubled
    '\\"',  # field ending in backslash-quote: PHP writes "\""
    '\\""',  # backslash, quote, quote
    'x\\"y"z',  # a doubled quote after an undoubled one
    "line one\nline two\n\nline four",
    "windows\r\nline",
    "tab\there",
    "comma, inside",
    "naïve café 東京",
    '"',
    '""',
    "\\",
]


def test_php_writer_matches_known_php_output() -> None:
    # Expected strings are what PHP 7/8 fputcsv($f, [$v]) writes (derived from php_fputcsv in ext/standard/file.c).
    assert php_csv_line(['a\\"b']) == '"a\\"b"\n'
    assert php_csv_line(["a\\"]) == '"a\\"\n'
    assert php_csv_line(['q"q']) == '"q""q"\n'
    assert php_csv_line(["x y", "", "7"]) == '"x y",,7\n'


@pytest.mark.parametrize("value", TRICKY)
def test_every_tricky_value_round_trips_between_neighbours(tmp_path: Path, value: str) -> None:
    path = tmp_path / "f.csv"
    write_php_csv(path, ["a", "b", "c"], [["before", value, "after"], ["1", value, "2"], [value, "x", value]])
    header, rows = read_header_and_rows(path)
    assert header == ["a", "b", "c"]
    assert [row for _, row in rows] == [["before", value, "after"], ["1", value, "2"], [value, "x", value]]


def test_all_tricky_values_in_one_file_keep_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    write_php_csv(path, ["id", "text"], [[str(i), v] for i, v in enumerate(TRICKY)])
    _, rows = read_header_and_rows(path)
    assert [row for _, row in rows] == [[str(i), v] for i, v in enumerate(TRICKY)]
    # The physical line of each record: header is line 1, embedded line breaks push later records down.
    expected_line, expected = 2, []
    for value in TRICKY:
        expected.append(expected_line)
        expected_line += 1 + value.count("\n")
    assert [line for line, _ in rows] == expected


def test_line_numbers_after_multiline_fields_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    rows = [[str(i), "multi\nline" if i % 3 == 0 else "one"] for i in range(10)]
    write_php_csv(path, ["id", "doc"], rows)
    with CsvTable(path, chunk_rows=4) as table:
        lines = []
        for chunk in table.chunks():
            assert not isinstance(chunk, BadRecord)
            lines += [(chunk.line_of(i), row[0]) for i, row in enumerate(chunk.rows)]
    # ids 0, 3, 6, 9 take two lines each
    assert lines == [(2, "0"), (4, "1"), (5, "2"), (6, "3"), (8, "4"), (9, "5"), (10, "6"), (12, "7"), (13, "8"), (14, "9")]


def test_bom_is_dropped_from_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,lang\n5,en\n")
    assert read_header_and_rows(path) == (["user_id", "lang"], [(2, ["5", "en"])])


def test_zero_byte_file_has_no_header_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"")
    assert read_header_and_rows(path) == (None, [])


def test_header_only_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"user_id,lang\n")
    assert read_header_and_rows(path) == (["user_id", "lang"], [])


def test_crlf_line_ends_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\r\n1,"x\r\ny"\r\n2,z')
    assert read_header_and_rows(path) == (["a", "b"], [(2, ["1", "x\r\ny"]), (4, ["2", "z"])])


def test_blank_lines_are_skipped_but_counted_in_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2\n\n3,4\n")
    assert read_header_and_rows(path) == (["a", "b"], [(2, ["1", "2"]), (4, ["3", "4"])])


def test_invalid_utf8_reports_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "item_data_0.csv"
    path.write_bytes(b"a,b\n1,ok\n2,caf\xe9\n")
    with pytest.raises(DataError) as caught:
        read_header_and_rows(path)
    issue = caught.value.issue
    assert (issue.file, issue.line, issue.column) == ("item_data_0.csv", 3, "")
    assert issue.value == "bytes b'\\xe9' at byte offset 14"
    assert issue.expected == "UTF-8 text"
    assert str(caught.value) == "item_data_0.csv, line 3: got \"bytes b'\\\\xe9' at byte offset 14\", expected UTF-8 text"


def test_invalid_utf8_offset_counts_the_bom(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xef\xbb\xbfa\n\xff\n")
    with pytest.raises(DataError) as caught:
        read_header_and_rows(path)
    assert (caught.value.issue.line, caught.value.issue.value) == (2, "bytes b'\\xff' at byte offset 5")


def test_invalid_utf8_in_a_later_block_reports_the_absolute_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ml_service.data.csvio.BLOCK_BYTES", 16)
    path = tmp_path / "f.csv"
    body = b"a,b\n" + b"".join(b"%d,xx\n" % i for i in range(10))  # 4 + 10 * 5 bytes
    path.write_bytes(body + b"9,\xc3(\n")
    with pytest.raises(DataError) as caught:
        read_header_and_rows(path)
    assert (caught.value.issue.line, caught.value.issue.value) == (12, "bytes b'\\xc3' at byte offset 56")


def test_unterminated_quote_at_end_of_file_is_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "item_data_3.csv"
    path.write_bytes(b'item_id,document\nengage_article1,"fine"\nengage_article2,"cut off\nin the midd')
    with pytest.raises(DataError) as caught:
        read_header_and_rows(path)
    issue = caught.value.issue
    assert (issue.file, issue.line, issue.column) == ("item_data_3.csv", 3, "")
    assert issue.value == "end of file inside a quoted field"
    assert issue.expected == 'a closing quote (") before the end of the file; the file looks truncated'


def test_malformed_record_is_reported_alone_and_reading_continues(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\n1,"x\ny"\n2,"ab"cd\n3,z\n')
    with CsvTable(path) as table:
        parts = list(table.chunks())
    assert isinstance(parts[1], BadRecord)
    assert parts[1].line == 4
    assert parts[1].message == "unreadable record (',' expected after '\"')"
    good = [(chunk.line_of(i), row) for chunk in (parts[0], parts[2]) for i, row in enumerate(chunk.rows)]
    assert good == [(2, ["1", "x\ny"]), (5, ["3", "z"])]


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        CsvTable(tmp_path / "user_data_0.csv")
    issue = caught.value.issue
    assert (issue.file, issue.line, issue.value, issue.expected) == (
        "user_data_0.csv",
        0,
        "No such file or directory",
        "a readable file",
    )
