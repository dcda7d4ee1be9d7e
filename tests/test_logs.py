"""configure_logging: service and access logs in their files, rotation, surviving uvicorn's dictConfig, and
several processes writing every log through rotation without losing a line."""

from __future__ import annotations

import json
import logging
import logging.config
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.logs import ACCESS_LOG, SERVICE_LOG, configure_logging
from ml_service.training.logs import read_summary


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    for name in ("ml_service", "ml_service.access"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
    logging.getLogger("ml_service.access").propagate = True


def flush() -> None:
    for name in ("ml_service", "ml_service.access"):
        for handler in logging.getLogger(name).handlers:
            handler.flush()


def test_lines_go_to_their_own_files(tmp_path: Path) -> None:
    configure_logging(tmp_path, console=False)
    logging.getLogger("ml_service.serving").info("model loaded")
    logging.getLogger("ml_service.access").info("GET /user-items 200")
    flush()
    service = (tmp_path / SERVICE_LOG).read_text()
    access = (tmp_path / ACCESS_LOG).read_text()
    assert "model loaded" in service and "GET /user-items" not in service
    assert access.strip().endswith("GET /user-items 200") and "model loaded" not in access


def test_access_log_rotates(tmp_path: Path) -> None:
    configure_logging(tmp_path, console=False, max_bytes=2000, backups=2)
    access = logging.getLogger("ml_service.access")
    for i in range(100):
        access.info("GET /user-items?totara_user_id=%d 200", i)
        if i % 10 == 9:
            flush()
    flush()
    assert (tmp_path / f"{ACCESS_LOG}.1").is_file()
    assert (tmp_path / ACCESS_LOG).stat().st_size < 2000
    assert "totara_user_id=99 " in (tmp_path / ACCESS_LOG).read_text()


def test_access_log_survives_dictconfig(tmp_path: Path) -> None:
    """uvicorn calls logging.config.dictConfig, which closes every handler; the access log must keep writing."""
    configure_logging(tmp_path, console=False)
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logging.getLogger("ml_service.access").info("after dictConfig")
    flush()
    assert "after dictConfig" in (tmp_path / ACCESS_LOG).read_text()


def test_access_timestamp_matches_logging_asctime() -> None:
    import logging as std_logging

    from ml_service.logs import log_timestamp

    for now in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0421):
        record = std_logging.LogRecord("x", std_logging.INFO, __file__, 0, "m", None, None)
        record.created, record.msecs = now, int((now - int(now)) * 1000)
        assert log_timestamp(now) == std_logging.Formatter("%(asctime)s").formatTime(record)


WRITER = r"""
import logging, sys, time
from pathlib import Path
from ml_service.logs import configure_logging
from ml_service.training.logs import SummaryRow, append_jsonl, append_summary

logs, name, count, max_bytes, backups = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
configure_logging(logs, console=False, max_bytes=max_bytes, backups=backups)
service, access = logging.getLogger("ml_service.test"), logging.getLogger("ml_service.access")
while not (logs / "go").exists():
    time.sleep(0.01)
for i in range(count):
    service.info("writer=%s line=%d %s", name, i, "x" * 40)
    access.info("writer=%s line=%d %s", name, i, "y" * 40)
    if i % 25 == 0:
        append_jsonl(logs / "training.jsonl", {"writer": name, "line": i, "pad": "z" * 40}, max_bytes=max_bytes, backups=backups)
    if i % 100 == 0:
        append_summary(logs / "train_summary.log", [SummaryRow("t", "popular", name, f"line {i}")])
logging.shutdown()
"""


def _lines(folder: Path, name: str) -> list[str]:
    files = [folder / name] + sorted(folder.glob(f"{name}.*"))
    return [line for path in files if path.name[len(name):].lstrip(".").isdigit() or path.name == name
            for line in path.read_text(encoding="utf-8").splitlines()]


def test_several_processes_writing_through_rotation_lose_no_line(tmp_path: Path) -> None:
    """Four real processes write the service, access, JSONL and summary logs at once while they rotate often."""
    import re
    import subprocess
    import sys

    writers, count, max_bytes, backups = 4, 1200, 40_000, 40  # ~100 bytes a line: ~12 files per log, all kept
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen([sys.executable, str(script), str(logs), f"w{n}", str(count), str(max_bytes), str(backups)])
             for n in range(writers)]
    (logs / "go").write_text("")
    for proc in procs:
        assert proc.wait(120) == 0
    expected = {(f"w{n}", i) for n in range(writers) for i in range(count)}
    for name, fill in ((SERVICE_LOG, "x"), (ACCESS_LOG, "y")):
        lines = _lines(logs, name)
        found = [re.search(rf"writer=(w\d) line=(\d+) {fill}{{40}}$", line) for line in lines]
        assert all(found), [line for line, m in zip(lines, found) if not m][:3]  # whole lines only, never mixed
        seen = [(m.group(1), int(m.group(2))) for m in found if m]
        assert len(seen) == len(expected) and set(seen) == expected, name  # each line exactly once
        rotated = sorted(logs.glob(f"{name}.*"))
        assert len(rotated) >= 5  # rotation really happened many times
        assert all(path.stat().st_size <= max_bytes for path in [logs / name, *rotated])
    records = [json.loads(line) for line in _lines(logs, "training.jsonl")]
    assert sorted((r["writer"], r["line"]) for r in records) == sorted(
        (f"w{n}", i) for n in range(writers) for i in range(0, count, 25))
    rows = read_summary(logs / "train_summary.log")
    assert sorted((r["TENANT_ID"], r["MSG"]) for r in rows) == sorted(
        (f"w{n}", f"line {i}") for n in range(writers) for i in range(0, count, 100))
