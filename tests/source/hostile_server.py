"""A real HTTP(S) server on 127.0.0.1 that misbehaves on purpose: lies about sizes, trickles, serves the probe."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

GOOD_FILES = {
    "tenants.csv": b"tenants\n0\n",
    "user_interactions_0.csv": b"user_id,item_id,rating,timestamp\n2,engage_article7,1,1700000000\n",
    "user_data_0.csv": b"user_id,lang\n2,en\n",
    "item_data_0.csv": (
        b"item_id,container_course,container_workspace,engage_article,engage_microlearning,totara_playlist,document\n"
        b"engage_article7,0,0,1,0,0,x\n"
    ),
}


class HostileServer:
    """Serves GOOD_FILES by name, except those given a behaviour in `behaviour` (file name -> kind).

    Kinds: `huge-declared` (Content-Length of 10 GB, then a few bytes), `chunked` (chunked transfer encoding,
    `body_bytes` bytes), `until-close` (no length: `body_bytes` bytes, then the connection closes), `trickle`
    (Content-Length 1000, one byte every `trickle_every_s` for at most `trickle_for_s`, then it closes),
    `trickle-headers` (the status line, then header bytes at that pace: the headers never end in time).
    POST to the Totara status path answers `ok`. Every misbehaviour ends by itself, so a test never hangs.
    """

    def __init__(self, *, tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
        self.behaviour: dict[str, str] = {}
        self.body_bytes = 3 << 20
        self.trickle_every_s = 0.2
        self.trickle_for_s = 20.0
        self.sent: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls_cert), str(tls_key))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _handler_for(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
            pass

        def do_POST(self) -> None:  # noqa: N802 - the Totara status probe
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            body = json.dumps({"data": {"totara_webapi_status": {"status": "ok"}}}).encode()
            self._headers(200, len(body))
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            name = self.path.rsplit("/", 1)[-1]
            kind = server.behaviour.get(name)
            try:
                if kind is None:
                    body = GOOD_FILES.get(name)
                    if body is None:
                        self._headers(404, 0)
                        return
                    self._headers(200, len(body))
                    self.wfile.write(body)
                elif kind == "huge-declared":
                    self._headers(200, 10 * 1024**3)
                    self.wfile.write(b"user_id,item_id\n")
                    self.close_connection = True
                elif kind == "chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._send(name, server.body_bytes, chunked=True)
                    self.wfile.write(b"0\r\n\r\n")
                elif kind == "until-close":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self._send(name, server.body_bytes)
                    self.close_connection = True
                elif kind == "trickle-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    self._trickle(name)
                    self.close_connection = True
                elif kind == "trickle":
                    self._headers(200, 1000)
                    self._trickle(name)
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.close_connection = True  # the client gave up, as it should

        def _trickle(self, name: str) -> None:
            stop = time.monotonic() + server.trickle_for_s
            while time.monotonic() < stop:
                self.wfile.write(b"x")
                self.wfile.flush()
                server.sent[name] = server.sent.get(name, 0) + 1
                time.sleep(server.trickle_every_s)

        def _headers(self, status: int, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, name: str, total: int, *, chunked: bool = False) -> None:
            piece = b"2,engage_article7,1,1700000000\n" * 2048
            if chunked:
                piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            sent = 0
            while sent < total:
                self.wfile.write(piece)
                sent += len(piece)
                server.sent[name] = sent

    return Handler


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made by the openssl command; the certificate is its own CA."""
    cert, key = folder / "totara-cert.pem", folder / "totara-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key
