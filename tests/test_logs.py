"""configure_logging: service and access logs in their files, rotation, and surviving uvicorn's dictConfig."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from typing import Iterator

import pytest

from ml_service.logs import ACCESS_LOG, SERVICE_LOG, configure_logging


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
