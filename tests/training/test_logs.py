"""train_summary.log in the reference format (last 100 rows) and the JSONL training log."""

import json
import re
from pathlib import Path

from ml_service.training.logs import (
    SUMMARY_HEADER,
    SummaryRow,
    append_jsonl,
    append_summary,
    read_summary,
    summary_timestamp,
)


def test_timestamp_has_reference_form() -> None:
    assert re.fullmatch(r"\d{2}-[A-Z][a-z]{2}-\d{4} \(\d{2}:\d{2}:\d{2}\)", summary_timestamp(0))


def test_summary_header_rows_and_cap(tmp_path: Path) -> None:
    log = tmp_path / "train_summary.log"
    append_summary(log, [SummaryRow("t0", "hybrid", "0", "success", "5, 7", "32, 64", "0.1, 0.2")])
    assert log.read_text().splitlines()[0] == ",".join(SUMMARY_HEADER)
    assert log.read_text().splitlines()[1] == 't0,hybrid,0,success,"5, 7","32, 64","0.1, 0.2"'
    append_summary(log, [SummaryRow(f"t{i}", "mf", str(i), "success") for i in range(1, 150)])
    rows = read_summary(log)
    assert len(rows) == 100
    assert rows[-1]["TENANT_ID"] == "149" and rows[0]["TENANT_ID"] == "50"


def test_jsonl_appends_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "training.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"b": [1, 2]})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"b": [1, 2]}]
