"""Logging setup: a rotating service log and a rotating access log under ML_LOGS_DIR, plus stderr."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable

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
    to <logs_dir>/access.log only, written by a background thread. Safe to call again (e.g. in each worker
    process): the handlers installed before are closed and replaced.
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
    access_file = BatchRotatingFileHandler(logs_dir / ACCESS_LOG, max_bytes=max_bytes, backups=backups)
    access_file.setFormatter(logging.Formatter(_ACCESS_FORMAT))
    background = BackgroundHandler(access_file)
    setattr(background, _MARK, True)
    access.addHandler(background)


class BatchRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file that writes many records with one write and one flush (used by BackgroundHandler)."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def emit_batch(self, records: list[logging.LogRecord | str]) -> None:
        try:
            text = "".join(
                (record if isinstance(record, str) else self.format(record)) + self.terminator for record in records
            )
            with self.lock:  # type: ignore[union-attr]
                if self.stream is None:
                    self.stream = self._open()
                if self.maxBytes > 0 and self.stream.tell() + len(text) >= self.maxBytes and self.stream.tell() > 0:
                    self.doRollover()
                self.stream.write(text)
                self.stream.flush()
        except Exception:
            self.handleError(records[-1])


class BackgroundHandler(logging.Handler):
    """Hands records to a writer thread, so the request path only appends to a queue (~5 µs instead of ~20 µs);
    the thread writes what has queued every `interval_s` seconds.

    flush() waits until everything queued so far is written; close() writes the rest and stops the thread.
    """

    def __init__(self, target: BatchRotatingFileHandler, *, interval_s: float = 0.2, max_batch: int = 1000) -> None:
        super().__init__()
        self.target = target
        self.interval_s = interval_s
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[logging.LogRecord | str | threading.Event] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._write_forever, args=(self._stop,), name="access-log-writer", daemon=True
                )
                self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if self._thread is None:
            # Closed, e.g. by logging.config.dictConfig (uvicorn calls it), while still attached to the logger:
            # start again, as a FileHandler reopens its file.
            self._start()
        self._queue.put(record)

    def put_line(self, line: str) -> None:
        """Queue a line that is already complete (timestamp included): the writer only joins and writes it."""
        if self._thread is None:
            self._start()
        self._queue.put(line)

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            self._wake.set()
            done.wait(5.0)

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread.is_alive():
            self._wake.set()
            thread.join(5.0)
        self.target.close()
        super().close()

    def _write_forever(self, stop: threading.Event) -> None:
        # Wake on a timer rather than per record: a writer woken by every put would fight the event loop
        # for the GIL on each request.
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            stopping = stop.is_set()
            batch: list[logging.LogRecord | str] = []
            waiting: list[threading.Event] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, threading.Event):
                    waiting.append(item)
                    continue
                batch.append(item)
                if len(batch) >= self.max_batch:
                    self.target.emit_batch(batch)
                    batch = []
            if batch:
                self.target.emit_batch(batch)
            for event in waiting:
                event.set()
            if stopping:
                return

def access_line_sink(logger: logging.Logger) -> Callable[[str], None] | None:
    """The put_line of the background handler on `logger`, or None when logging is configured another way."""
    for handler in logger.handlers:
        if isinstance(handler, BackgroundHandler):
            return handler.put_line
    return None


_stamp_cache: tuple[int, str] = (-1, "")


def log_timestamp(now: float) -> str:
    """`2026-11-23 09:15:02,123` as logging's default asctime, with the seconds part formatted once a second."""
    global _stamp_cache
    second = int(now)
    if _stamp_cache[0] != second:
        _stamp_cache = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
    return f"{_stamp_cache[1]},{int((now - second) * 1000):03d}"


def _file_handler(path: Path, fmt: str, max_bytes: int, backups: int) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _MARK, True)
    return handler
