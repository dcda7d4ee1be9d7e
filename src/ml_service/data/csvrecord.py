"""Read one CSV record exactly as the csv module would, for the rare record with a field longer than its limit.

The csv module refuses a field longer than `csv.field_size_limit()` (128 KiB by default), a process-wide setting
this service leaves alone. CsvTable bounds records itself (ML_MAX_RECORD_MB) and hands the few records the module
refused to `parse_text`: the module's state machine (Modules/_csv.c) for the dialect CsvTable uses (`,`, `"`
doubled inside quotes, no escape character, strict), on the text the module would have read line by line
(io.StringIO with newline="" splits lines after `\n`, `\r\n` and `\r`), but a whole quoted field at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELD_LIMIT_ERROR = "field larger than field limit"  # the csv module's message when a field exceeds its limit
END_OF_DATA = "unexpected end of data"  # the csv module's message for end of input inside a quoted field
QUOTE_NOT_FOLLOWED = "',' expected after '\"'"  # the csv module's message for `"ab"cd` (strict mode)

_UNQUOTED_END = re.compile(r"[,\r\n]")
_QUOTED_TEXT = re.compile(r'[^"]*(?:""[^"]*)*')  # a quoted field's text: up to its closing (lone) quote
_LINE_END = re.compile(r"\r\n?|\n")


@dataclass(frozen=True)
class ParsedRecord:
    """One record's fields (`[]` for a blank line), or the error that ended it, and where it ends in the text."""

    fields: list[str] | None
    error: str | None
    end: int


def parse_text(text: str, pos: int) -> ParsedRecord | None:
    """The record starting at `text[pos]` (a line start), as the csv module reads it; None when `text` ends inside
    a quoted field (the record needs more text, or the file is cut). A record ends where its last line ends; a
    malformed one where the line with the fault ends (the csv module drops the rest of that line)."""
    size = len(text)
    if pos < size and text[pos] in "\r\n":
        return ParsedRecord([], None, _line_end(text, pos))
    fields: list[str] = []
    while True:
        if pos == size:  # the end of the file right after a comma
            fields.append("")
            return ParsedRecord(fields, None, size)
        if text[pos] == '"':
            quoted = _QUOTED_TEXT.match(text, pos + 1)
            assert quoted is not None  # the pattern matches the empty string
            pos = quoted.end()
            if pos == size:
                return None
            value = quoted.group()
            fields.append(value.replace('""', '"') if '""' in value else value)
            pos += 1  # the closing quote
            if pos == size:
                return ParsedRecord(fields, None, size)
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] in "\r\n":
                return ParsedRecord(fields, None, _line_end(text, pos))
            return ParsedRecord(None, QUOTE_NOT_FOLLOWED, _line_end(text, pos))
        stop = _UNQUOTED_END.search(text, pos)
        if stop is None:
            fields.append(text[pos:])
            return ParsedRecord(fields, None, size)
        fields.append(text[pos:stop.start()])
        if stop.group() != ",":
            return ParsedRecord(fields, None, _line_end(text, stop.start()))
        pos = stop.end()


def _line_end(text: str, pos: int) -> int:
    """Where the line holding `text[pos]` ends: after its `\n`, `\r\n` or `\r` (or at the end of the text)."""
    found = _LINE_END.search(text, pos)
    return found.end() if found else len(text)


def count_lines(text: str, start: int = 0, end: int | None = None) -> int:
    """Physical lines in `text[start:end]` as io.StringIO(newline="") splits them (a last one without a line end
    counts). A `\r\n` is never split by the bounds: they are line starts."""
    end = len(text) if end is None else end
    lines = text.count("\n", start, end)
    if "\r" in text:
        lines += text.count("\r", start, end) - text.count("\r\n", start, end)
    if end > start and text[end - 1] not in "\r\n":
        lines += 1
    return lines
