"""Training logs: the reference train_summary.log (CSV, last 100 rows) and our JSONL training log.

Both are written by several processes (the scheduler in the service, the training child, a manual `train`):
the summary's read-modify-write holds a lock across processes, the JSONL log is a SharedRotatingFile.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ml_service.logs import BACKUPS, MAX_BYTES, SharedRotatingFile, exclusive_lock

SUMMARY_HEADER = ("TIMESTAMP", "ALGORITHM", "TENANT_ID", "MSG", "EPOCHS", "N_EMBEDDINGS", "SCORE")
SUMMARY_MAX_ROWS = 100
DOWNLOAD_FAILED_MSG = (
    "The model training process failed as service was not successful in fetching the data from Totara instance"
)
_lock = threading.Lock()


@dataclass(frozen=True)
class SummaryRow:
    """One row of train_summary.log (spec §7)."""

    timestamp: str
    algorithm: str
    tenant: str
    msg: str
    epochs: str = ""
    n_embeddings: str = ""
    score: str = ""

    def as_tuple(self) -> tuple[str, ...]:
        return (self.timestamp, self.algorithm, self.tenant, self.msg, self.epochs, self.n_embeddings, self.score)


def summary_timestamp(when: float | None = None) -> str:
    """The reference's timestamp form, e.g. `20-Oct-2021 (16:18:30)`, in local time."""
    return time.strftime("%d-%b-%Y (%H:%M:%S)", time.localtime(time.time() if when is None else when))


def join_list(values: Iterable[Any]) -> str:
    """A search list as the reference writes it: values joined with ', '."""
    return ", ".join(str(v) for v in values)


def append_summary(path: Path, rows: Iterable[SummaryRow]) -> None:
    """Append rows, keep the last 100, rewrite atomically (a reader never sees half a file); the lock spans
    processes, so rows that two processes append at once are both kept."""
    new_rows = [r.as_tuple() for r in rows]
    if not new_rows:
        return
    with _lock, exclusive_lock(path.with_name(f".{path.name}.lock")):
        existing: list[tuple[str, ...]] = []
        if path.exists():
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header and tuple(header) == SUMMARY_HEADER:
                    existing = [tuple(r) for r in reader if r]
        kept = (existing + new_rows)[-SUMMARY_MAX_ROWS:]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SUMMARY_HEADER)
        writer.writerows(kept)
        _atomic_write(path, buffer.getvalue())


def read_summary(path: Path) -> list[dict[str, str]]:
    """All rows of train_summary.log as dicts (empty when the file is missing or has another header)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def append_jsonl(path: Path, record: dict[str, Any], *, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
    """Append one JSON record (one line, one write) to the training log, rotating it like the service log."""
    line = json.dumps(record, sort_keys=True, default=_json_default) + "\n"
    log_file = SharedRotatingFile(path, max_bytes=max_bytes, backups=backups)
    try:
        log_file.write(line)
    finally:
        log_file.close()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
