"""Read PHP `fputcsv` output (Totara exports) as chunks of records that know their physical line numbers.

Records are bounded by ML_MAX_RECORD_MB, not by the csv module's process-wide field limit (left as it is): the few
records with a field longer than that limit are read again from the file and parsed by data/csvrecord.py.

PHP writes with `"` enclosure and `\\` as escape character: a quote inside a field is doubled, except right after
a backslash, where it is written once (`a\\"b` -> `"a\\"b"`), and the reader must keep the backslash. Python's csv
module (RFC 4180 style, no escape character) reads every other PHP output exactly, including a backslash at the
end of a field (`"C:\\temp\\"`), so before parsing we double the quotes PHP left single: a `\\"` whose quote is
not followed by a delimiter, a line end or the end of the file. The one PHP output that stays ambiguous (a field
containing `\\"` followed by a comma or newline) cannot occur in Totara's text columns, which replace `"` by `'`.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ml_service.data.csvrecord import END_OF_DATA, FIELD_LIMIT_ERROR, count_lines, parse_text
from ml_service.data.limits import InputLimits, describe_bytes
from ml_service.data.tenant import DataError, Issue

BLOCK_BYTES = 1 << 22  # decoded and handed to the csv module this many bytes at a time (cut at a line end)
CHUNK_ROWS = 1 << 16  # records per chunk handed to the validators
_BOM = b"\xef\xbb\xbf"
_SINGLE_QUOTE_AFTER_BACKSLASH = re.compile(r'\\"(?=[^,\r\n])')
_TRUNCATED = END_OF_DATA


def _double_php_quotes(text: str) -> str:
    """Double the quotes PHP left single after a backslash (see the module docstring)."""
    return _SINGLE_QUOTE_AFTER_BACKSLASH.sub(r'\\""', text) if '\\"' in text else text


@dataclass
class RowChunk:
    """Consecutive non-blank records; `rows[i]` starts on physical line `line_of(i)` (the header is line 1)."""

    rows: list[list[str]]
    first_line: int  # line on which the chunk's first record (or a blank line before it) starts
    last_line: int | None  # line on which the last record ends, None when unknown
    _lines: list[int] | None = field(default=None, repr=False)

    def line_of(self, i: int) -> int:
        if self._lines is None:
            if self.last_line is not None and self.last_line - self.first_line + 1 == len(self.rows):
                return self.first_line + i  # no multi-line record and no blank line: one record per line
            self._lines = record_start_lines(self.rows, self.first_line)
        return self._lines[i]


@dataclass(frozen=True)
class BadRecord:
    """A record the csv layer could not split into fields (e.g. `"ab"cd`); the caller skips it with a warning."""

    line: int
    message: str


def physical_lines(row: list[str]) -> int:
    """How many physical lines a record spans: 1 plus the line breaks (LF, CRLF or CR) inside its fields."""
    span = 1
    for value in row:
        if "\n" in value or "\r" in value:
            span += value.count("\n") + value.count("\r") - value.count("\r\n")
    return span


def record_start_lines(rows: list[list[str]], first_line: int) -> list[int]:
    """Start line of each record, given the start line of the first and that records are consecutive."""
    lines = []
    line = first_line
    for row in rows:
        lines.append(line)
        line += physical_lines(row)
    return lines


class CsvTable:
    """One export file: `header` (None for a zero-byte or blank file), then `chunks()` of the data records."""

    def __init__(
        self,
        path: Path,
        name: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
        max_record_bytes: int = InputLimits.max_record_bytes,
    ):
        self.path = Path(path)
        self.name = name or self.path.name
        self.chunk_rows = chunk_rows
        self.max_record_bytes = max_record_bytes
        self._open_record: tuple[int, int] | None = None
        # (first line, first byte, end byte) of the recent text blocks: a record the csv module refused is read
        # again from there. Blocks ending more than max_record_bytes before the newest one are forgotten.
        self._blocks: deque[tuple[int, int, int]] = deque()
        self._taken = 0  # lines parse_record read past the csv module (its line_num does not count them)
        self._newest_text = ""  # the text of self._blocks[-1]
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise DataError(Issue(self.name, 0, "", exc.strerror or str(exc), "a readable file")) from exc
        self._stream = io.StringIO("")  # the block the csv module is reading, as lines
        self._lines = itertools.chain.from_iterable(self._streams())
        self._reader = csv.reader(self._lines, strict=True)
        self._lines_done = 0  # physical line on which the last record handed out ends
        self.header: list[str] | None = self._read_header()
        self.header_line = self._lines_done

    def __enter__(self) -> "CsvTable":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _text_blocks(self) -> Iterator[str]:
        """The file as UTF-8 text in blocks cut after a newline, quotes PHP left single already doubled.

        No record longer than `max_record_bytes` ever reaches the csv module: a line is never held longer than
        that (reads are at most that long, and an unfinished line is checked as it grows), and a quoted field
        spanning lines is measured as it goes. Either fails the file at once, so memory stays bounded.
        """
        limit = self.max_record_bytes
        read_size = min(BLOCK_BYTES, limit)  # a line lying wholly inside one read is then never over the limit
        offset = 0  # byte offset of the unfinished line in the file
        newlines = 0  # LF bytes before the unfinished line
        unfinished: list[bytes] = []  # pieces of the line not yet ended by a newline
        unfinished_bytes = 0
        first = True
        lines_before = 0  # physical lines (as io.StringIO splits them) before the block
        while True:
            data = self._file.read(read_size)
            if first:
                first = False
                if data.startswith(_BOM):
                    data, offset = data[len(_BOM):], len(_BOM)
            if data:
                end = data.rfind(b"\n") + 1
                if end == 0:
                    unfinished.append(data)
                    unfinished_bytes += len(data)
                    if unfinished_bytes > limit:
                        raise self._too_long(newlines + 1, "a line")
                    continue
                if unfinished_bytes + data.find(b"\n") > limit:
                    raise self._too_long(newlines + 1, "a line")
                unfinished.append(data[:end])
                block = b"".join(unfinished)
                unfinished = [data[end:]] if end < len(data) else []
                unfinished_bytes = len(data) - end
            else:
                block = b"".join(unfinished)
                unfinished = []
                if not block:
                    return
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = newlines + block.count(b"\n", 0, exc.start) + 1
                bad = block[exc.start:exc.end]
                raise DataError(
                    Issue(
                        self.name,
                        line,
                        "",
                        f"bytes {bad!r} at byte offset {offset + exc.start}",
                        "UTF-8 text",
                    )
                ) from None
            text = _double_php_quotes(text)
            if self._open_record is not None or '"' in text:
                self._measure_quoted_records(text, newlines + 1)
            self._remember_block(lines_before + 1, offset, offset + len(block))
            self._newest_text = text  # alive anyway while the csv module reads it
            lines_before += text.count("\n")
            if "\r" in text:
                lines_before += text.count("\r") - text.count("\r\n")
            if not text.endswith(("\n", "\r")):
                lines_before += 1  # the last line of the file, without a line end
            offset += len(block)
            newlines += block.count(b"\n")
            yield text

    def _streams(self) -> Iterator[io.StringIO]:
        for text in self._text_blocks():
            self._stream = io.StringIO(text, newline="")
            yield self._stream

    def _remember_block(self, first_line: int, start: int, end: int) -> None:
        blocks = self._blocks
        blocks.append((first_line, start, end))
        while len(blocks) > 1 and blocks[0][2] < start - self.max_record_bytes:
            blocks.popleft()

    def _line_num(self) -> int:
        """Physical lines read so far by the csv module and parse_record together."""
        return self._reader.line_num + self._taken

    def _measure_quoted_records(self, text: str, first_line: int) -> None:
        """Follow quoted fields across lines; DataError when one record grows past `max_record_bytes`.

        Counted in characters of the decoded text, never more than its bytes (the line bound is in bytes).
        `_open_record` is (start line, characters so far) of a record whose quoted field is still open.
        Quotes PHP wrote single have been doubled already, so an odd count of `"` on a line opens or closes.
        """
        limit = self.max_record_bytes
        open_record = self._open_record
        for number, line in enumerate(text.split("\n"), start=first_line):
            odd = line.count('"') % 2 == 1
            if open_record is None:
                if odd:
                    open_record = (number, len(line) + 1)
            else:
                open_record = None if odd else (open_record[0], open_record[1] + len(line) + 1)
                if open_record is not None and open_record[1] > limit:
                    raise self._too_long(open_record[0], "a record", " (its quoted field spans lines: is a quote never closed?)")
        self._open_record = open_record

    def _too_long(self, line: int, what: str, hint: str = "") -> DataError:
        limit = describe_bytes(self.max_record_bytes)
        return DataError(
            Issue(
                self.name,
                line,
                "",
                f"{what} longer than {limit}",
                f"records of at most {limit}{hint}; the file was not read further "
                "(ML_MAX_RECORD_MB raises the limit)",
            )
        )

    def _truncated(self, line: int) -> DataError:
        return DataError(
            Issue(
                self.name,
                line,
                "",
                "end of file inside a quoted field",
                'a closing quote (") before the end of the file; the file looks truncated',
            )
        )

    def _read_header(self) -> list[str] | None:
        for row in self._records_one_by_one():
            if isinstance(row, BadRecord):
                raise DataError(Issue(self.name, row.line, "", row.message, "a comma-separated header line"))
            return row
        return None

    def _records_one_by_one(self) -> Iterator[list[str] | BadRecord]:
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                outcome = self._after_error(exc, self._lines_done + 1)
                if isinstance(outcome, DataError):
                    raise outcome from None
                if isinstance(outcome, BadRecord):
                    yield outcome
                    continue
                row = outcome
            self._lines_done = self._line_num()
            if row:
                yield row

    def _after_error(self, exc: csv.Error, line: int) -> list[str] | BadRecord | DataError:
        """The record starting on `line` that the csv module refused: its fields when only the module's field
        limit was in the way, else a BadRecord (skipped) or the DataError that fails the file."""
        if _TRUNCATED in str(exc):
            return self._truncated(line)
        if FIELD_LIMIT_ERROR in str(exc):
            return self._long_record(line)
        self._lines_done = self._line_num()  # the csv module drops the rest of the offending line
        return BadRecord(line, f"unreadable record ({exc})")

    def _long_record(self, line: int) -> list[str] | BadRecord | DataError:
        """Parse the record starting on `line` with parse_text. The csv module has consumed its lines up to the
        one it stopped in: they are taken again from the newest text block (read again from the file when the
        record began in an earlier block). The rest of the record is read from the text stream the module reads,
        which is then put back where the record ends."""
        read_through = self._line_num()
        start = next((block for block in reversed(self._blocks) if block[0] <= line), None)
        if start is None:  # it began before the remembered blocks, more than max_record_bytes ago
            return self._too_long(line, "a record")
        first_line, begin, _ = start
        text = self._newest_text
        if start is not self._blocks[-1]:
            position = self._file.tell()
            try:
                self._file.seek(begin)
                data = self._file.read(self._blocks[-1][1] - begin)
            finally:
                self._file.seek(position)
            text = _double_php_quotes(data.decode("utf-8")) + text  # decoded once already: cannot fail
        pos = sum(map(len, itertools.islice(io.StringIO(text, newline=""), line - first_line)))
        while (result := parse_text(text, pos)) is None:  # the text ends inside a quoted field
            if len(text) - pos > self.max_record_bytes:
                return self._too_long(line, "a record")
            self._stream.seek(0, io.SEEK_END)  # its text is in `text` already
            more = next(self._lines, None)  # the next block's first line; self._stream holds the rest
            if more is None:
                return self._truncated(line)
            text, pos = text[pos:] + more + self._stream.read(), 0
        if result.end - pos > self.max_record_bytes:
            return self._too_long(line, "a record")
        # text ends with the whole of the newest block, which the stream holds: resume the stream after the record
        self._stream.seek(len(self._newest_text) - (len(text) - result.end))
        self._taken += count_lines(text, pos, result.end) - (read_through - line + 1)
        self._lines_done = self._line_num()
        if result.error is not None:
            return BadRecord(line, f"unreadable record ({result.error})")
        assert result.fields is not None
        return result.fields

    def chunks(self) -> Iterator[RowChunk | BadRecord]:
        """Data records in chunks of at most `chunk_rows`; blank lines are skipped; malformed records come alone."""
        if self.header is None:
            return
        while True:
            first_line = self._lines_done + 1
            rows: list[list[str]] = []
            outcome: BadRecord | DataError | None = None
            counted, counted_to = 0, first_line - 1  # rows[:counted] end on line counted_to
            while True:
                wanted = self.chunk_rows - len(rows)
                try:
                    rows.extend(itertools.islice(self._reader, wanted))
                except csv.Error as exc:
                    counted_to += sum(physical_lines(row) for row in rows[counted:])
                    record = self._after_error(exc, counted_to + 1)
                    if not isinstance(record, list):
                        outcome = record
                        break
                    rows.append(record)
                    counted, counted_to = len(rows), self._lines_done
                    if len(rows) < self.chunk_rows:
                        continue
                break
            last_line: int | None = None
            if outcome is None:
                last_line = self._lines_done = self._line_num()
            if rows:
                chunk = RowChunk(rows, first_line, last_line)
                if [] in rows:
                    lines = record_start_lines(rows, first_line)
                    kept = [i for i, row in enumerate(rows) if row]
                    chunk = RowChunk([rows[i] for i in kept], first_line, None, [lines[i] for i in kept])
                if chunk.rows:
                    yield chunk
            if isinstance(outcome, DataError):
                raise outcome
            if outcome is not None:
                yield outcome
                continue
            if len(rows) < self.chunk_rows:
                return


def read_header_and_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """Small-file helper (tests, tools): header and every (line, record); malformed records raise DataError."""
    with CsvTable(path) as table:
        out: list[tuple[int, list[str]]] = []
        for part in table.chunks():
            if isinstance(part, BadRecord):
                raise DataError(Issue(table.name, part.line, "", part.message, "a well-formed CSV record"))
            out.extend((part.line_of(i), row) for i, row in enumerate(part.rows))
        return table.header, out


_PHP_NEEDS_QUOTES = re.compile(r'[,"\\\r\n\t ]')


def php_csv_field(value: str) -> str:
    """One field exactly as PHP's fputcsv writes it (`,` delimiter, `"` enclosure, `\\` escape character).

    Quoted when it holds a comma, quote, backslash, CR, LF, TAB or space; inside the quotes a `"` is doubled
    unless the character before it is the escape `\\` (PHP then leaves the pair as it is).
    """
    if not _PHP_NEEDS_QUOTES.search(value):
        return value
    if '"' not in value:
        return f'"{value}"'
    out = ['"']
    escaped = False
    for c in value:
        if c == "\\":
            escaped = True
        elif not escaped and c == '"':
            out.append('"')
        else:
            escaped = False
        out.append(c)
    out.append('"')
    return "".join(out)


def php_csv_line(fields: Sequence[object]) -> str:
    """One record as PHP's fputcsv writes it, `\\n`-terminated (a port of php_fputcsv in ext/standard/file.c)."""
    return ",".join(php_csv_field(str(value)) for value in fields) + "\n"


def write_php_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a file byte-for-byte as Totara's export does (demo data, tests of downstream modules)."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(php_csv_line(header))
        for row in rows:
            out.write(php_csv_line(row))
