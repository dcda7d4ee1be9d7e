"""parse_text, the long-record path of the CSV reader, against the csv module itself on random input."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import given, settings, strategies as st

from ml_service.data.csvrecord import END_OF_DATA, QUOTE_NOT_FOLLOWED, count_lines, parse_text

Outcome = tuple[str, object, int]  # ("row", fields, line_num) or ("error", message, line_num)


@contextmanager
def csv_limit(limit: int) -> Iterator[None]:
    """The csv module's field limit raised for the oracle only, restored afterwards."""
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def by_csv_module(text: str) -> list[Outcome]:
    """Every record and error as csv.reader(strict=True) reports them; after an error it reads on, as CsvTable."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    out: list[Outcome] = []
    with csv_limit(sys.maxsize):
        while True:
            try:
                out.append(("row", next(reader), reader.line_num))
            except StopIteration:
                return out
            except csv.Error as exc:
                out.append(("error", str(exc), reader.line_num))
                if str(exc) == END_OF_DATA:
                    return out


def by_parse_text(text: str) -> list[Outcome]:
    out: list[Outcome] = []
    pos = line_num = 0
    while pos < len(text):
        record = parse_text(text, pos)
        if record is None:
            out.append(("error", END_OF_DATA, line_num + count_lines(text, pos)))
            break
        line_num += count_lines(text, pos, record.end)
        out.append(("row", record.fields, line_num) if record.error is None else ("error", record.error, line_num))
        pos = record.end
    return out


# Few characters, each meaningful to the parser, so that random text hits every state and transition.
csv_text = st.text(alphabet=st.sampled_from(['"', ",", "\n", "\r", "a", " ", "é", "\x00", "\\"]), max_size=60)
# Records as a writer would make them (quotes doubled), with long fields, then joined by assorted line ends.
field = st.one_of(
    st.text(alphabet=st.sampled_from(["a", " ", "é", "\\"]), max_size=5),
    st.lists(st.sampled_from(['"', ",", "\n", "\r\n", "\r", "x", "\\"]), max_size=40).map(
        lambda parts: '"' + "".join(parts).replace('"', '""') + '"'),
    st.integers(min_value=0, max_value=3000).map(lambda n: '"' + ("ab,\"\"\n" * n) + '"'),
)
records = st.lists(st.lists(field, min_size=1, max_size=4).map(",".join), max_size=8)
line_end = st.sampled_from(["\n", "\r\n", "\r"])


@settings(max_examples=400, deadline=None)
@given(csv_text)
def test_any_text_reads_as_the_csv_module_reads_it(text: str) -> None:
    assert by_parse_text(text) == by_csv_module(text)


@settings(max_examples=150, deadline=None)
@given(records, line_end, st.booleans())
def test_written_records_with_long_fields_read_as_the_csv_module_reads_them(rows: list[str], end: str, last_end: bool) -> None:
    text = end.join(rows) + (end if last_end and rows else "")
    assert by_parse_text(text) == by_csv_module(text)


def test_the_csv_module_messages_and_blank_lines() -> None:
    assert by_parse_text('a,"b""c"\n\n"ab"cd,e\nf\n"open\n') == [
        ("row", ["a", 'b"c'], 1), ("row", [], 2), ("error", QUOTE_NOT_FOLLOWED, 3), ("row", ["f"], 4),
        ("error", END_OF_DATA, 5),
    ]


def test_a_quoted_field_cut_by_the_end_of_the_text_needs_more() -> None:
    assert parse_text('1,"open\nstill open\n', 0) is None
    assert parse_text('1,"closed ""here""\n"\n2', 0) == parse_text('1,"closed ""here""\n"\n', 0)
