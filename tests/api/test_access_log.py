"""The access log (issue part 7): one line per request, never a credential, in <logs_dir>/access.log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ml_service.api.middleware import loggable_query
from ml_service.config import Settings
from ml_service.logs import ACCESS_LOG, SERVICE_LOG, configure_logging
from tests.api.support import KEY, signed

USER_ITEMS = "/user-items?totara_user_id=2&item_type=container_course&tenant=0&n_items=3"


@pytest.fixture
def logs_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "service-logs"
    configure_logging(folder, console=False)
    yield folder
    for name in ("ml_service", "ml_service.access"):  # leave global logging as other tests expect it
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
    logging.getLogger("ml_service.access").propagate = True


def test_access_log_lines_without_secrets(client: httpx.Client, logs_dir: Path, base_url: str, settings: Settings) -> None:
    good = signed()
    bad = signed(key="a-wrong-key")
    assert client.get(base_url + USER_ITEMS, headers=good).status_code == 200
    assert client.get(base_url + USER_ITEMS, headers=bad).status_code == 401
    assert client.get(base_url + "/nothing", headers=good).status_code == 404
    assert client.get(base_url + "/?api_key=hunter2&x=1").status_code == 401
    assert client.get(base_url + "/").status_code == 200
    for handler in logging.getLogger("ml_service.access").handlers:
        handler.flush()
    access = (logs_dir / ACCESS_LOG).read_text()
    lines = access.splitlines()
    assert len(lines) == 5
    assert "GET " + USER_ITEMS + " 200 " in lines[0] and lines[0].endswith("ms")
    assert " 401 " in lines[1] and "/nothing 404" in lines[2] and "api_key=%2A%2A%2A" in lines[3]
    assert lines[0].split()[2] == "127.0.0.1"
    everything = access + (logs_dir / SERVICE_LOG).read_text()
    for secret in (KEY, good["X-Totara-Ml-Key"], bad["X-Totara-Ml-Key"], "hunter2", "a-wrong-key"):
        assert secret not in everything


def test_loggable_query_masks_secret_looking_values() -> None:
    assert loggable_query(b"") == ""
    assert loggable_query(b"tenant=0&n_items=5") == "?tenant=0&n_items=5"
    assert loggable_query(b"token=abc&Secret=x&tenant=1") == "?token=%2A%2A%2A&Secret=%2A%2A%2A&tenant=1"


def test_configure_logging_twice_does_not_duplicate_lines(tmp_path: Path) -> None:
    try:
        configure_logging(tmp_path, console=False)
        configure_logging(tmp_path, console=False)
        logging.getLogger("ml_service.serving").info("one line")
        for handler in logging.getLogger("ml_service").handlers:
            handler.flush()
        assert (tmp_path / SERVICE_LOG).read_text().count("one line") == 1
    finally:
        for name in ("ml_service", "ml_service.access"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                handler.close()
            logger.setLevel(logging.NOTSET)
        logging.getLogger("ml_service.access").propagate = True


def test_client_text_cannot_forge_or_flood_log_lines(client: httpx.Client, logs_dir: Path, base_url: str) -> None:
    forged = "/x%0A2026-01-01 00:00:00,000 10.0.0.1 GET /user-items 200 0.10ms"
    assert client.get(base_url + forged, headers=signed()).status_code == 404
    assert client.get(base_url + "/y%E2%80%A8z%0D%1B[31m", headers=signed()).status_code == 404
    assert client.get(base_url + "/" + "a" * 5000, headers=signed()).status_code == 404
    for handler in logging.getLogger("ml_service.access").handlers:
        handler.flush()
    lines = (logs_dir / ACCESS_LOG).read_text().splitlines()
    assert len(lines) == 3, lines  # one line per request, whatever the path holds
    assert "/x\\x0a2026-01-01\\x2000:00:00,000\\x2010.0.0.1" in lines[0] and lines[0].endswith("ms")
    assert "/y\\u2028z\\x0d\\x1b[31m 404 " in lines[1]
    assert "...(+4001 chars) 404 " in lines[2] and len(lines[2]) < 1100


def test_loggable_escapes_what_is_not_printable() -> None:
    from ml_service.api.log_safety import loggable

    assert loggable("/user-items?tenant=0") == "/user-items?tenant=0"
    assert loggable("a\nb\\c d\u202e\x85\U000e0041") == "a\\x0ab\\x5cc\\x20d\\u202e\\x85\\U000e0041"
    assert loggable("é/Ω") == "é/Ω"
    assert loggable("abcdef", limit=4) == "abcd...(+2 chars)"
