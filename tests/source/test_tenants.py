"""tenants.csv parsing: header, BOM, empty files, invalid ids with their exact location, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.data.tenant import DataError
from ml_service.source.tenants import parse_tenants


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "tenants.csv"
    path.write_bytes(content)
    return path


def test_ids_in_file_order(tmp_path: Path) -> None:
    assert parse_tenants(write(tmp_path, b"tenants\n0\n5\n3\n")) == ["0", "5", "3"]


def test_bom_and_crlf_tolerated(tmp_path: Path) -> None:
    assert parse_tenants(write(tmp_path, b"\xef\xbb\xbftenants\r\n0\r\n3\r\n")) == ["0", "3"]


@pytest.mark.parametrize("content", [b"", b"tenants\n", b"tenants", b"\n\n"])
def test_empty_or_header_only_means_tenant_zero(tmp_path: Path, content: bytes) -> None:
    assert parse_tenants(write(tmp_path, content)) == ["0"]


def test_duplicates_removed_keeping_first(tmp_path: Path) -> None:
    assert parse_tenants(write(tmp_path, b"tenants\n0\n3\n0\n3\n4\n")) == ["0", "3", "4"]


def test_blank_lines_skipped(tmp_path: Path) -> None:
    assert parse_tenants(write(tmp_path, b"tenants\n0\n\n3\n\n")) == ["0", "3"]


@pytest.mark.parametrize("bad", ["-1", "abc", "3.0", "03", "1e3"])
def test_invalid_id_reports_file_line_column_value(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_tenants(write(tmp_path, f"tenants\n0\n{bad}\n".encode()))
    issue = caught.value.issue
    assert (issue.file, issue.line, issue.column, issue.value) == ("tenants.csv", 3, "tenants", bad)
    assert "non-negative integer" in issue.expected


def test_wrong_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        parse_tenants(write(tmp_path, b"tenant_id\n0\n"))
    assert caught.value.issue.line == 1
    assert caught.value.issue.value == "tenant_id"


def test_two_columns_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        parse_tenants(write(tmp_path, b"tenants\n0,1\n"))
    assert caught.value.issue.line == 2


def test_not_utf8_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        parse_tenants(write(tmp_path, b"tenants\n\xff\n"))
    assert caught.value.issue.expected == "UTF-8 text"


def test_a_tenants_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, b"tenants\n" + b"1\n" * 5000)
    with pytest.raises(DataError) as caught:
        parse_tenants(path, max_bytes=1000)
    assert caught.value.issue.value == "10008 bytes" and "ML_MAX_RECORD_MB" in caught.value.issue.expected
    assert parse_tenants(path) == ["1"]
