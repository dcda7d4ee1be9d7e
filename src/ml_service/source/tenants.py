"""Parse tenants.csv (spec §5.2): the tenant ids whose export files exist, in file order."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ml_service.data.limits import InputLimits, describe_bytes
from ml_service.data.tenant import DataError, Issue
from ml_service.source.base import TENANTS_FILE

HEADER = "tenants"
DEFAULT_TENANTS = ["0"]  # what an empty file, or Totara's 204 when multitenancy is off, means
_TENANT_ID = re.compile(r"0|[1-9][0-9]*")


def parse_tenants(path: Path, max_bytes: int = InputLimits.max_record_bytes) -> list[str]:
    """Tenant ids of a tenants.csv, duplicates dropped (first kept); zero-byte or header-only means ["0"].

    Raises DataError (file, line, column, value, expected) on a wrong header or an id that is not a
    non-negative integer written without leading zeros (the id becomes part of file names, so `03` and `3`
    must not both be accepted). The file is read whole, so one larger than `max_bytes` (ML_MAX_RECORD_MB: a
    list of ids is never near it) is refused unread.
    """
    name = path.name or TENANTS_FILE
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            Issue(name, 0, "", f"{size} bytes", f"a list of tenant ids of at most {describe_bytes(max_bytes)} (ML_MAX_RECORD_MB)")
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(Issue(name, 0, "", repr(exc.object[exc.start:exc.end]), "UTF-8 text")) from exc
    rows = list(csv.reader(text.splitlines(), delimiter=",", quotechar='"', escapechar="\\"))
    if not rows or all(not any(cell.strip() for cell in row) for row in rows):
        return list(DEFAULT_TENANTS)
    header = [cell.strip() for cell in rows[0]]
    if header != [HEADER]:
        raise DataError(Issue(name, 1, "", ",".join(rows[0]), f"the header {HEADER!r} (one column)"))
    tenants: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue  # blank line, e.g. a trailing one
        if len(cells) != 1:
            raise DataError(Issue(name, line, HEADER, ",".join(row), "exactly one value per line"))
        value = cells[0]
        if not _TENANT_ID.fullmatch(value):
            raise DataError(Issue(name, line, HEADER, value, "a non-negative integer tenant id such as 0 or 3"))
        if value not in tenants:
            tenants.append(value)
    return tenants or list(DEFAULT_TENANTS)
