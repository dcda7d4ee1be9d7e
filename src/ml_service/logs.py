"""Logging setup: a rotating service log and a rotating access log under ML_LOGS_DIR, plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

SERVICE_LOG = "service.log"
ACCESS_LOG = "access.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACCESS_FORMAT = "%(asctime)s %(message)s"
_MARK = "_ml_service_handler"  # handlers we installed, so a second call replaces rather than duplicates them


def configure_logging(
    logs_dir: Path, *, console: bool = True, level: int = logging.INFO, max_bytes: int = MAX_BYTES, backups: int = BACKUPS
) -> None:
    """Send logger `ml_service` to <logs_dir>/service.log (and stderr if console) and `ml_service.access`
    to <logs_dir>/access.log only. Safe to call again (e.g. in each worker process): handlers are replaced.
    """
    logs_dir = Path(logs_dir)
    logs_dir.mkdir(parents=True, exist_ok=True)
    service = logging.getLogger("ml_service")
    access = logging.getLogger("ml_service.access")
    for logger in (service, access):
        for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
            logger.removeHandler(handler)
            handler.close()
    service.setLevel(level)
    service.addHandler(_file_handler(logs_dir / SERVICE_LOG, _FORMAT, max_bytes, backups))
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(_FORMAT))
        setattr(stream, _MARK, True)
        service.addHandler(stream)
    access.setLevel(logging.INFO)
    access.propagate = False  # request lines stay out of the service log and stderr
    access.addHandler(_file_handler(logs_dir / ACCESS_LOG, _ACCESS_FORMAT, max_bytes, backups))


def _file_handler(path: Path, fmt: str, max_bytes: int, backups: int) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _MARK, True)
    return handler
