"""Logging setup: a rotating service log and a rotating access log under ML_LOGS_DIR, plus stderr.

Several processes write these files (server workers, the scheduler, the training child), so rotation must
lose no line: see SharedRotatingFile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: the lock below is then per process only
    fcntl = None  # type: ignore[assignment]

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


class SharedRotatingFile:
    """A log file that several processes append to and any of them rotates, without losing or splitting a line.

    Every write is one O_APPEND write of whole lines, made under an exclusive flock of a lock file beside the log.
    Under that lock the writer first reopens the log if another process has rotated it away (its inode changed),
    then rotates it if this write would take it past `max_bytes` (file -> .1 -> .2 ... up to `backups`). A line
    is therefore always written to a file that is kept; no process keeps appending to a renamed file, so the
    size limit holds and backups are not shifted out early by a process that rotates on its own stale view.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = os.getpid()

    def write(self, text: str) -> None:
        """Append `text` (whole lines) in one write, rotating first when it would pass the size limit."""
        self.write_lines([text])

    def write_lines(self, texts: list[str]) -> None:
        """Append each text (one or more whole lines) in as few writes as the size limit allows, under one lock."""
        blocks = [text.encode("utf-8") for text in texts if text]
        if not blocks:
            return
        limited = self.max_bytes > 0 and self.backups > 0
        with self._thread_lock, self._process_lock():
            fd = self._current_fd()
            size = os.fstat(fd).st_size
            pending: list[bytes] = []
            pending_bytes = 0
            for block in blocks:
                if limited and size + pending_bytes > 0 and size + pending_bytes + len(block) > self.max_bytes:
                    _write_all(fd, b"".join(pending))
                    pending, pending_bytes = [], 0
                    self._rotate()
                    fd = self._current_fd()
                    size = os.fstat(fd).st_size
                pending.append(block)
                pending_bytes += len(block)
            _write_all(fd, b"".join(pending))

    def close(self) -> None:
        with self._thread_lock:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._fd = self._lock_fd = None

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        if os.getpid() != self._pid:  # forked: the inherited lock would be shared with the parent
            self._fd = self._lock_fd = None
            self._pid = os.getpid()
        if fcntl is None:
            yield
            return
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _current_fd(self) -> int:
        """Our descriptor of the file now at `path`, reopened when another process rotated it away."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        if self._fd is not None and on_disk is not None:
            own = os.fstat(self._fd)
            if (own.st_dev, own.st_ino) == (on_disk.st_dev, on_disk.st_ino):
                return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def _rotate(self) -> None:
        try:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        except OSError as exc:  # e.g. Windows, where another process has the file open: keep writing, lose nothing
            print(f"cannot rotate {self.path}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock of `lock_path` (created) across processes; a no-op without fcntl (Windows)."""
    if fcntl is None:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class SharedRotatingFileHandler(logging.Handler):
    """A logging handler over SharedRotatingFile: one record is one line, written with one write."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__()
        self.file = SharedRotatingFile(path, max_bytes=max_bytes, backups=backups)
        self.terminator = "\n"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write(_chomp(self.format(record)) + self.terminator)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.file.close()
        super().close()


class BatchRotatingFileHandler(SharedRotatingFileHandler):
    """A shared rotating file that writes many records with one write (used by BackgroundHandler)."""

    def emit_batch(self, records: list[logging.LogRecord | str]) -> None:
        try:
            self.file.write_lines([
                _chomp(record if isinstance(record, str) else self.format(record)) + self.terminator
                for record in records
            ])
        except Exception as exc:  # never into the request path; say it where an operator looks
            print(f"cannot write {self.file.path}: {exc}", file=sys.stderr)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes everything at once unless the disk is full
        view = view[os.write(fd, view):]


def _chomp(text: str) -> str:
    """The record without a trailing newline (the terminator adds one); a traceback's inner newlines stay."""
    return text[:-1] if text.endswith("\n") else text


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
    handler = SharedRotatingFileHandler(path, max_bytes=max_bytes, backups=backups)
    handler.setFormatter(logging.Formatter(fmt))
    setattr(handler, _MARK, True)
    return handler
