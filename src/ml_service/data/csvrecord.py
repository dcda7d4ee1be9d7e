"""Read one CSV record exactly as the csv module would, for the rare record with a field longer than its limit.

The csv module refuses a field longer than `csv.field_size_limit()` (128 KiB by default), a process-wide setting
this service leaves alone. CsvTable bounds records itself (ML_MAX_RECORD_MB) and hands the few records the module
refused to `parse_record`: the module's state machine (Modules/_csv.c) for the dialect CsvTable uses (`,`, `"`
doubled inside quotes, no escape character, strict), fed the same physical lines (io.StringIO with newline="").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

FIELD_LIMIT_ERROR = "field larger than field limit"  # the csv module's message when a field exceeds its limit
END_OF_DATA = "unexpected end of data"  # the csv module's message for end of input inside a quoted field
QUOTE_NOT_FOLLOWED = "',' expected after '\"'"  # the csv module's message for `"ab"cd` (strict mode)
STRAY_NEWLINE = "new-line character seen in unquoted field - do you need to open the file with newline=''?"
TOO_LONG = "record longer than the limit"

_START_RECORD, _START_FIELD, _IN_FIELD, _IN_QUOTED, _QUOTE_IN_QUOTED, _EAT_CRNL = range(6)
_UNQUOTED_END = re.compile(r"[,\r\n]")
_QUOTED_TEXT = re.compile(r'[^"]*(?:""[^"]*)*')


@dataclass(frozen=True)
class ParsedRecord:
    """One record's fields (`[]` for a blank line), or the error that ended it; `lines` physical lines were read."""

    fields: list[str] | None
    error: str | None
    lines: int


def parse_record(lines: Iterable[str], max_chars: int) -> ParsedRecord | None:
    """The next record from `lines` (each with its line end, as io.StringIO(newline="") yields them).

    Reads only the lines of that record. On a malformed record the rest of its current line is dropped, as the
    csv module does. `error` is TOO_LONG as soon as the record holds more than `max_chars` characters. None when
    `lines` is empty.
    """
    fields: list[str] = []
    piece: list[str] = []  # the current field so far; a quoted one as written, its quotes still doubled
    quoted = False
    state = _START_RECORD
    used = chars = 0
    for line in lines:
        used += 1
        chars += len(line)
        if chars > max_chars:
            return ParsedRecord(None, TOO_LONG, used)
        if state == _IN_QUOTED and '"' not in line:  # most lines of a long quoted field
            piece.append(line)
            continue
        pos, end = 0, len(line)
        while pos < end:
            if state == _IN_QUOTED:
                text = _QUOTED_TEXT.match(line, pos)  # up to a lone quote (the closing one) or the line end
                assert text is not None  # the pattern matches the empty string
                piece.append(text.group())
                pos = text.end()
                if pos < end:
                    pos, state = pos + 1, _QUOTE_IN_QUOTED
                continue
            char = line[pos]
            if state == _START_RECORD:
                if char in "\r\n":
                    state, pos = _EAT_CRNL, pos + 1
                    continue
                state = _START_FIELD
            if state == _START_FIELD:
                quoted = False
                if char == '"':
                    state, quoted = _IN_QUOTED, True
                elif char == ",":
                    fields.append("")
                elif char in "\r\n":
                    fields.append("")
                    state = _EAT_CRNL
                else:
                    state = _IN_FIELD
                    continue
                pos += 1
            elif state == _IN_FIELD:
                stop = _UNQUOTED_END.search(line, pos)
                if stop is None:
                    piece.append(line[pos:])
                    break
                piece.append(line[pos:stop.start()])
                fields.append(_field(piece, quoted))
                piece = []
                state = _START_FIELD if stop.group() == "," else _EAT_CRNL
                pos = stop.end()
            elif state == _QUOTE_IN_QUOTED:
                if char == '"':
                    piece.append('""')
                    state = _IN_QUOTED
                elif char == "," or char in "\r\n":
                    fields.append(_field(piece, quoted))
                    piece = []
                    state = _START_FIELD if char == "," else _EAT_CRNL
                else:
                    return ParsedRecord(None, QUOTE_NOT_FOLLOWED, used)
                pos += 1
            else:  # _EAT_CRNL: only the rest of a line end may follow
                if char not in "\r\n":
                    return ParsedRecord(None, STRAY_NEWLINE, used)
                pos += 1
        # the end of a physical line: only an open quoted field carries the record on to the next line
        if state in (_START_FIELD, _IN_FIELD, _QUOTE_IN_QUOTED):
            fields.append(_field(piece, quoted))
            return ParsedRecord(fields, None, used)
        if state in (_START_RECORD, _EAT_CRNL):
            return ParsedRecord(fields, None, used)
    if used == 0:
        return None
    return ParsedRecord(None, END_OF_DATA, used)


def _field(piece: list[str], quoted: bool) -> str:
    """A field's value: a quoted field's doubled quotes made single (its pieces never split a pair)."""
    value = "".join(piece)
    return value.replace('""', '"') if quoted and '""' in value else value
