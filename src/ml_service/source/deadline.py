"""A total deadline on one HTTP transfer: at expiry the connection's socket is shut, whatever phase it is in.

Per-read time-outs never fire on a server that sends a byte just before each one expires, in the headers or in
the body. httpcore's `trace` extension hands over the connection's stream when it is made; a timer shuts that
socket down at the deadline, so the blocked read returns at once and httpx raises a transport error, which the
caller reports as the deadline (`expired` is then True). Use one connection per transfer (no keep-alive).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any


class TransferDeadline:
    """Context manager: arms a timer on entry; `trace` is the httpx request extension that finds the socket."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "TransferDeadline":
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Disarm (the transfer is over); safe to call more than once."""
        self._timer.cancel()
        with self._lock:
            self._socket = None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore trace callback: remember the socket of the new connection (plain, then TLS-wrapped)."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socket = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._socket is not None:
                _shut(self._socket)


def _shut(sock: socket.socket) -> None:
    # The base class's shutdown acts on the descriptor alone; SSLSocket.shutdown would also drop its TLS state
    # under the reading thread's feet.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed
        pass
