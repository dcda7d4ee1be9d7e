"""Size limits on export input (ML_MAX_* settings): what one line, list cell, header or download may hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml_service.config import Settings

MB = 1 << 20


@dataclass(frozen=True)
class InputLimits:
    """Bounds that keep one hostile or broken export file from exhausting memory or CPU.

    The defaults are far above real Totara rows: the bundled sample's longest record is 475 bytes and it has 24
    topic columns; the longest field Totara writes is an item's `document` (a resource's whole text), and 16 MB
    holds several books. An over-long record costs at most a small multiple of the record limit in memory
    (benchmarks/results/hostile_inputs.json).
    """

    max_record_bytes: int = 16 * MB  # ML_MAX_RECORD_MB: one CSV record (a line, or a multi-line quoted row)
    max_list_entries: int = 1000  # ML_MAX_LIST_ENTRIES: `|`-joined values per user_data cell (rest ignored)
    max_tag_columns: int = 2000  # ML_MAX_TAG_COLUMNS: topic_/tag_ columns of item_data (rest ignored)
    max_export_bytes: int = 4096 * MB  # ML_MAX_EXPORT_MB: one export file, downloaded or read from a folder
    download_deadline_s: float = 1800.0  # ML_DOWNLOAD_DEADLINE: whole transfer of one file, 202 waits excluded

    @classmethod
    def from_settings(cls, settings: "Settings") -> "InputLimits":
        return cls(
            max_record_bytes=settings.max_record_mb * MB,
            max_list_entries=settings.max_list_entries,
            max_tag_columns=settings.max_tag_columns,
            max_export_bytes=settings.max_export_mb * MB,
            download_deadline_s=settings.download_deadline_s,
        )


def describe_bytes(count: int) -> str:
    """`16 MB` for whole megabytes, else the byte count: limits in messages read as they were set."""
    return f"{count // MB} MB" if count >= MB and count % MB == 0 else f"{count} bytes"
