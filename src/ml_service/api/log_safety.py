"""Client-controlled text (paths, queries, methods) made safe for one log line: escaped and length-capped."""

from __future__ import annotations

import re

# Characters of a request target written to a log line. Totara's longest real call (`/similar-items` with a
# 20-digit item id, a 64-character tenant and n_items=1000) is under 200 characters; 1,000 leaves room for any
# honest client, while a 60 KB URL cannot make every request a 60 KB line (the 10 MB access log would then
# rotate away its history every ~170 requests).
MAX_LOGGED_TARGET = 1000
# What may go into a log line as is: visible ASCII. Everything else (controls: `%0A` in a path forges a log
# line; spaces: they separate the line's fields; the backslash: it starts our escapes) is checked further.
_ASCII_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


def loggable(text: str, limit: int = MAX_LOGGED_TARGET) -> str:
    """`text` safe for one log line: at most `limit` characters of it, every backslash, space and character that
    is not printable (controls, line and paragraph separators, bidi overrides) escaped as `\\xNN`/`\\uNNNN`."""
    cut = ""
    if len(text) > limit:
        cut = f"...(+{len(text) - limit} chars)"
        text = text[:limit]
    if text.isascii() and not _ASCII_UNSAFE.search(text):
        return text + cut  # the common case: nothing to escape
    return "".join(_escape(c) for c in text) + cut


def _escape(char: str) -> str:
    if char.isprintable() and char not in " \\":
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
