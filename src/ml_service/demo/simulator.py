"""A Totara site as the service sees it (spec §3.3, §4.2, §4.3): signed export downloads and the status probe."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Callable
from urllib.parse import unquote, urlsplit

from ml_service.auth import verify_totara_side
from ml_service.source.base import COMPLETED_FLAG, EXPORTS, TENANTS_FILE

log = logging.getLogger("ml_service.simulator")

EXPORT_PREFIX = ("pluginfile.php", "1", "ml_recommender", "export")
GRAPHQL_PATH = "totara/webapi/ajax.php"
STATUS_OPERATION = "totara_webapi_status_nosession"
DISABLED_TEXT = "Recommendations engine is disabled"


class TotaraSimulator:
    """A real HTTP server serving an export folder the way Totara's pluginfile.php does, with fault injection.

    Fault knobs (plain attributes, read on every request, so tests may change them while it runs):
    `not_ready_times` 202s before each file is served, `stall_seconds` pause after the headers,
    `truncate_bytes` bytes of body actually sent under a larger Content-Length, `status_override`
    file name -> forced status, and `fault_files` (None = every file) naming which files the first three apply to.
    """

    def __init__(
        self,
        export_dir: Path,
        key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        multitenancy: bool = True,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.export_dir = Path(export_dir)
        self.key = key
        self.host = host
        self.port = port
        self.multitenancy = multitenancy
        self.enabled = enabled
        self.clock = clock  # Totara's clock for the token window; tests pin it
        self.not_ready_times = 0
        self.stall_seconds = 0.0
        self.truncate_bytes: int | None = None
        self.status_override: dict[str, int] = {}
        self.fault_files: set[str] | None = None
        self.requests = _RecordList()
        self._served_202: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL (the ML_TOTARA_URL to give the service), without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "TotaraSimulator":
        if self._server is not None:
            return self
        server_class = _IPv6Server if ":" in self.host else _Server
        self._stopping.clear()
        self._server = server_class((self.host, self.port), _handler_for(self))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="totara-simulator", daemon=True)
        self._thread.start()
        log.info("Totara simulator listening on %s (export folder %s)", self.url, self.export_dir)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> "TotaraSimulator":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def requests_for(self, file_name: str) -> list[tuple[str, str, int]]:
        """The recorded requests whose path ends with `/<file_name>`."""
        return [r for r in self.requests.snapshot() if r[1].endswith("/" + file_name)]

    # Decisions, kept apart from the HTTP plumbing.

    def known_names(self) -> set[str]:
        """tenants.csv and `<export>_<t>.csv` for t in {0} ∪ tenants.csv's ids (only 0 when multitenancy is off)."""
        tenants = {"0"}
        if self.multitenancy:
            tenants |= _read_tenant_ids(self.export_dir / TENANTS_FILE)
        return {TENANTS_FILE} | {f"{export}_{t}.csv" for export in EXPORTS for t in tenants}

    def _take_not_ready(self, name: str) -> bool:
        """True while this file still owes one of its `not_ready_times` 202 answers."""
        with self._lock:
            served = self._served_202.get(name, 0)
            if served < self.not_ready_times:
                self._served_202[name] = served + 1
                return True
            return False

    def _faulty(self, name: str) -> bool:
        return self.fault_files is None or name in self.fault_files


class _RecordList(list):  # type: ignore[type-arg]
    """A list of (method, path, status) records; handler threads append under a lock, readers may copy it."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def append(self, record: tuple[str, str, int]) -> None:  # type: ignore[override]
        with self._lock:
            super().append(record)

    def snapshot(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler_for(sim: TotaraSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(_TotaraHandler):
        simulator = sim

    return Handler


class _TotaraHandler(BaseHTTPRequestHandler):
    simulator: TotaraSimulator
    protocol_version = "HTTP/1.1"
    server_version = "TotaraSimulator/1.0"

    def do_GET(self) -> None:
        self._answer_export(send_body=True)

    def do_HEAD(self) -> None:
        self._answer_export(send_body=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if _segments(self.path) != GRAPHQL_PATH.split("/"):
            self._send_text(HTTPStatus.NOT_FOUND, "Not found")
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.get("operationName") != STATUS_OPERATION:
            error = {"errors": [{"message": "Only the totara_webapi_status_nosession operation is simulated"}]}
            self._send_bytes(HTTPStatus.BAD_REQUEST, json.dumps(error).encode(), "application/json")
            return
        now = int(self.simulator.clock())
        date = datetime.fromtimestamp(now).strftime("%A, %d %B %Y, %I:%M %p")
        reply = {"data": {"totara_webapi_status": {"status": "ok", "timestamp": now, "date": date}}}
        self._send_bytes(HTTPStatus.OK, json.dumps(reply, separators=(",", ":")).encode(), "application/json")

    def _answer_export(self, *, send_body: bool) -> None:
        sim = self.simulator
        segments = _segments(self.path)
        if segments[: len(EXPORT_PREFIX)] == list(EXPORT_PREFIX) and not sim.enabled:
            self._send_text(HTTPStatus.INTERNAL_SERVER_ERROR, DISABLED_TEXT, send_body=send_body)
            return
        allowed = len(segments) == len(EXPORT_PREFIX) + 1 and segments[: len(EXPORT_PREFIX)] == list(EXPORT_PREFIX)
        allowed = allowed and verify_totara_side(
            self.headers.get("x-totara-time"), self.headers.get("x-totara-ml-key"), sim.key, now=sim.clock()
        )
        if not allowed:
            self._send_text(HTTPStatus.NOT_FOUND, "Not found", send_body=send_body)
            return
        name = segments[-1]
        if name in sim.status_override:
            status = sim.status_override[name]
            self._send_text(status, f"Simulated status {status}", send_body=send_body)
            return
        if name not in sim.known_names():
            self._send_text(HTTPStatus.NOT_FOUND, "Not found", send_body=send_body)
            return
        if name == TENANTS_FILE and not sim.multitenancy:
            self._send_bytes(HTTPStatus.NO_CONTENT, b"", None)
            return
        path = sim.export_dir / name
        if not (sim.export_dir / COMPLETED_FLAG).is_file() or not path.is_file():
            self._send_bytes(HTTPStatus.ACCEPTED, b"", None)
            return
        faulty = sim._faulty(name)
        if faulty and sim._take_not_ready(name):
            self._send_bytes(HTTPStatus.ACCEPTED, b"", None)
            return
        self._send_file(path, faulty=faulty, send_body=send_body)

    def _send_file(self, path: Path, *, faulty: bool, send_body: bool) -> None:
        sim = self.simulator
        with open(path, "rb") as body:
            size = os.fstat(body.fileno()).st_size
            truncate = sim.truncate_bytes if faulty else None
            declared = size if truncate is None else max(size, truncate + 1)
            self._record(HTTPStatus.OK)  # before answering, so a client that got the answer sees the record
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(declared))
            self.send_header("Cache-Control", "no-store")
            if truncate is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if not send_body:
                return
            if faulty and sim.stall_seconds > 0:
                self.wfile.flush()
                if sim._stopping.wait(sim.stall_seconds):
                    self.close_connection = True
                    return
            try:
                self.connection.sendfile(body, count=size if truncate is None else min(truncate, size))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if truncate is not None:
                self.close_connection = True

    def _send_text(self, status: int, text: str, *, send_body: bool = True) -> None:
        self._send_bytes(status, text.encode("utf-8"), "text/plain; charset=utf-8", send_body=send_body)

    def _send_bytes(self, status: int, body: bytes, content_type: str | None, *, send_body: bool = True) -> None:
        self._record(status)
        self.send_response(status)
        if status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED) or status < 200:
            self.end_headers()  # these statuses never carry a body
            return
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _record(self, status: int) -> None:
        self.simulator.requests.append((self.command, self.path, int(status)))
        log.info("%s %s -> %d", self.command, self.path, int(status))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        pass  # every answer is logged once by _record, on the "ml_service.simulator" logger


def _segments(raw_path: str) -> list[str]:
    """Path segments without the query; leading slashes collapse, since old services request `//pluginfile.php`."""
    path = urlsplit(raw_path).path
    return [unquote(part) for part in path.lstrip("/").split("/")]


def _read_tenant_ids(path: Path) -> set[str]:
    """Tenant ids listed in tenants.csv, read leniently (Totara's list of known tenants, not validation)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return set()
    return {line.strip().strip('"') for line in lines[1:] if line.strip().strip('"').isdigit()}


def serve_forever(export_dir: Path, key: str, host: str = "127.0.0.1", port: int = 8080, multitenancy: bool = True) -> None:
    """Run the simulator until Ctrl-C or SIGTERM (the `ml-service simulate-totara` command)."""
    stop = threading.Event()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous: dict[int, object] = {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if on_main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        with TotaraSimulator(Path(export_dir), key, host=host, port=port, multitenancy=multitenancy) as sim:
            tenants = "on" if multitenancy else "off"
            print(f"Totara simulator listening on {sim.url} (export folder {export_dir}, multitenancy {tenants}); Ctrl-C stops it", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
