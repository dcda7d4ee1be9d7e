"""Fields longer than the csv module's own limit: read exactly up to ML_MAX_RECORD_MB, refused past it, and the
csv module's process-wide `field_size_limit` is never changed."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ml_service.data import csvio
from ml_service.data.csvio import BadRecord, CsvTable, php_csv_line, write_php_csv
from ml_service.data.limits import MB
from ml_service.data.tenant import DataError

# A field of a little over 1 MB with everything a parser can get wrong: doubled quotes, PHP's backslash-quote,
# commas and every kind of line end.
LONG = ('He said "yes", then "no"\r\n' + "C:\\temp\\ and a\\\"b, " + "line\nline\rline\r\n" + "x" * 1000) * 1000
ROWS = [["1", "short"], ["2", LONG], ["3", "after\nthe long one"], ["4", ""], ["5", LONG[::-1]], ["6", "end"]]


@contextmanager
def csv_limit(limit: int) -> Iterator[None]:
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def read_all(path: Path, **options: int) -> tuple[list[str] | None, list[tuple[int, list[str]] | BadRecord]]:
    with CsvTable(path, **options) as table:
        out: list[tuple[int, list[str]] | BadRecord] = []
        for part in table.chunks():
            out.extend([part] if isinstance(part, BadRecord) else [(part.line_of(i), r) for i, r in enumerate(part.rows)])
        return table.header, out


def expected_lines(rows: list[list[str]]) -> list[int]:
    lines, line = [], 2
    for row in rows:
        lines.append(line)
        line += 1 + sum(v.count("\n") + v.count("\r") - v.count("\r\n") for v in row)
    return lines


def test_reading_files_leaves_the_csv_modules_field_limit_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "item_data_0.csv"
    write_php_csv(path, ["id", "document"], ROWS)
    script = textwrap.dedent(f"""
        import csv
        before = csv.field_size_limit()
        import ml_service.cli, ml_service.api.app, ml_service.training.pipeline
        from ml_service.data.csvio import read_header_and_rows
        header, rows = read_header_and_rows({str(path)!r})
        assert len(rows) == {len(ROWS)} and len(rows[1][1][1]) == {len(LONG)}
        print(before, csv.field_size_limit())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["131072", "131072"]


def test_a_field_of_a_megabyte_under_the_limit_is_read_exactly_with_its_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "item_data_0.csv"
    write_php_csv(path, ["id", "document"], ROWS)
    assert len(LONG) > MB >= 8 * csv.field_size_limit()
    header, records = read_all(path, max_record_bytes=2 * MB)
    assert header == ["id", "document"]
    assert records == list(zip(expected_lines(ROWS), ROWS))


def test_a_long_field_in_the_header_and_one_spanning_many_small_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 64 KB: the long record is read again from the block where it began, far behind the csv module."""
    monkeypatch.setattr(csvio, "BLOCK_BYTES", 1 << 16)
    path = tmp_path / "f.csv"
    write_php_csv(path, ["id", LONG[:300_000]], ROWS)
    header, records = read_all(path, max_record_bytes=2 * MB, chunk_rows=2)
    assert header == ["id", LONG[:300_000]]
    assert records == list(zip([line + LONG[:300_000].count("\n") + LONG[:300_000].count("\r") - LONG[:300_000].count("\r\n")
                                 for line in expected_lines(ROWS)], ROWS))


def test_a_long_field_over_the_limit_fails_the_file_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "item_data_0.csv"
    write_php_csv(path, ["id", "document"], ROWS)
    with pytest.raises(DataError) as caught:
        read_all(path, max_record_bytes=MB)
    issue = caught.value.issue
    assert (issue.file, issue.line) == ("item_data_0.csv", 3)
    assert issue.value.endswith("longer than 1 MB") and "ML_MAX_RECORD_MB" in issue.expected


def test_a_quoted_field_the_quote_count_misses_still_stops_at_the_limit(tmp_path: Path) -> None:
    """`x"y` is a plain field, so the quote that follows opens one: an even count of quotes on the line, yet the
    record goes on. It must still end at the record limit, not at the end of the file."""
    path = tmp_path / "item_data_0.csv"
    path.write_bytes(b'id,a,b\n1,x"y,"open\n' + b"no quote on this line\n" * 20_000 + b'closed"\n2,ok,ok\n')
    with pytest.raises(DataError) as caught:
        read_all(path, max_record_bytes=256 * 1024)
    issue = caught.value.issue
    assert (issue.line, issue.value) == (2, "a record longer than 262144 bytes")


def test_a_malformed_long_record_is_skipped_alone(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\n1,"' + b"z" * 200_000 + b'"oops\n2,fine\n')
    _, records = read_all(path)
    assert records == [BadRecord(2, "unreadable record (',' expected after '\"')"), (3, ["2", "fine"])]


def test_a_file_cut_inside_a_long_quoted_field_is_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\n1,ok\n2,"' + b"y\n" * 100_000)
    with pytest.raises(DataError) as caught:
        read_all(path)
    assert (caught.value.issue.line, caught.value.issue.value) == (3, "end of file inside a quoted field")


cell = st.one_of(
    st.text(alphabet=st.sampled_from(["a", "b", " ", "\\", '"', ",", "\n", "\r"]), max_size=12),
    st.integers(min_value=1, max_value=400).map(lambda n: 'q"\n\\"' * n),
)
table_rows = st.lists(st.lists(cell, min_size=2, max_size=2), max_size=12)
damage = st.sampled_from([b"", b'9,"ab"cd\n', b"\n\n", b"\r\n"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table_rows, damage, st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=5),
       st.sampled_from([64, 1000, csvio.BLOCK_BYTES]))
def test_csv_module_and_long_record_path_read_any_file_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[list[str]], bad: bytes, where: int, chunk_rows: int,
    block: int,
) -> None:
    """The same file read with the csv module's limit lowered to 16 characters (most records take the long-record
    path) and raised past every record (none does): records, line numbers and bad records are identical. Small
    read blocks make records span blocks, so they are read again from the file and continued into later blocks."""
    path = tmp_path / "f.csv"
    lines = [php_csv_line(row).encode() for row in rows]
    path.write_bytes(b"h1,h2\n" + b"".join(lines[:where]) + bad + b"".join(lines[where:]))
    monkeypatch.setattr(csvio, "BLOCK_BYTES", block)
    with csv_limit(sys.maxsize):
        whole = outcome(path, chunk_rows)
    with csv_limit(16):
        split = outcome(path, chunk_rows)
    assert split == whole


def outcome(path: Path, chunk_rows: int) -> object:
    """What reading the file gives: its records, or the error that failed it (PHP's one ambiguous output,
    `\\"` before a comma, can leave a quote open)."""
    try:
        return read_all(path, chunk_rows=chunk_rows)
    except DataError as exc:
        return exc.issue
