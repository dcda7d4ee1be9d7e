"""A real S3 API for the store tests: moto's threaded server on 127.0.0.1, reached through a TCP relay that can be cut."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ml_service.store import ModelStore
from ml_service.store.s3 import FsspecBackend

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "models"


class Relay:
    """Forwards TCP connections from its own port to moto's; `cut()` closes every connection and refuses new ones
    (as a network partition or a dead endpoint does), `restore()` lets them through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="s3-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._open -= {source, sink}

    def cut(self) -> None:
        self.down = True
        with self._lock:
            doomed = list(self._open)
        for s in doomed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


@dataclass
class S3:
    """A running moto S3 with one bucket: its direct endpoint and the relay's."""

    endpoint: str
    relay: Relay

    @property
    def relay_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"

    def store(self, cache: Path, prefix: str = "site", *, keep_versions: int = 5, via_relay: bool = False, timeout_s: float = 3.0) -> ModelStore:
        url = f"s3://{BUCKET}/{prefix}"
        endpoint = self.relay_endpoint if via_relay else self.endpoint
        return ModelStore(url, keep_versions, backend=FsspecBackend(url, cache, endpoint_url=endpoint, timeout_s=timeout_s))

    def env(self, prefix: str = "site", *, via_relay: bool = True) -> dict[str, str]:
        """The environment of a process that uses this store (ML_STORE_URL, the endpoint, the credentials)."""
        endpoint = self.relay_endpoint if via_relay else self.endpoint
        return {**CREDENTIALS, "ML_STORE_URL": f"s3://{BUCKET}/{prefix}", "ML_S3_ENDPOINT_URL": endpoint}


@contextlib.contextmanager
def moto_s3() -> Iterator[S3]:
    """Start moto on a free port, make the bucket, and stop everything afterwards."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    relay = Relay(port)
    try:
        s3 = S3(f"http://{host}:{port}", relay)
        urllib.request.urlopen(urllib.request.Request(s3.endpoint + "/moto-api/reset", method="POST"), timeout=10).close()  # moto's state is per process
        backend = FsspecBackend(f"s3://{BUCKET}/x", Path("/nonexistent"), endpoint_url=s3.endpoint)
        backend.fs.mkdir(BUCKET)
        yield s3
    finally:
        relay.close()
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
