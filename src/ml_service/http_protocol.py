"""uvicorn's httptools protocol with each response written to the socket in one send() instead of two, and a
graceful stop that answers a request already on its way on an idle connection instead of dropping it."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STOP_GRACE_S = 1.0  # how long a stopping worker still reads a request from an idle connection


class WriteCoalescer:
    """A transport proxy that joins the writes made within one event-loop step into one write.

    uvicorn writes a response's head at `http.response.start` and its body at `http.response.body`: two
    send() calls and two TCP segments on a TCP_NODELAY socket, about a third of a worker's CPU for small JSON
    answers. Both happen in the same step of the request's task, so a flush scheduled with call_soon sends
    them together, right after that step. Everything else is the wrapped transport's.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        data = data if type(data) is bytes else bytes(data)  # a caller's bytearray may change after the call
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        """Hand what was written so far to the real transport (a no-op when nothing is pending)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._pending or ())

    def __getattr__(self, name: str) -> Any:  # get_extra_info, is_closing, pause_reading, set_protocol, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a WriteCoalescer (pass as uvicorn.Config(http=...))."""

    _stopping = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(WriteCoalescer(transport, self.loop))  # type: ignore[arg-type]

    def shutdown(self) -> None:
        """Graceful stop (SIGTERM, SIGHUP's rolling restart). uvicorn closes an idle connection at once, but a
        client that has just connected, or reuses a kept-alive one, may have its request in flight: it would see a
        reset. Here such a request within STOP_GRACE_S is still answered, with `Connection: close`."""
        self._stopping = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # as uvicorn: the running request finishes, then the connection closes
            return
        self.loop.call_later(STOP_GRACE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self._stopping and self.cycle is not None:
            self.cycle.keep_alive = False
