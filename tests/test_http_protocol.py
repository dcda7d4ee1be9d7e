"""The coalescing httptools protocol over real sockets: one send() per response, HTTP semantics unchanged."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Iterator

import pytest

from ml_service.http_protocol import WriteCoalescer
from tests.api.support import RunningServer


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the path; `/stream` answers in three chunks without a length; `/big` sends 1 MB."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b"x" * 1_000_000 if scope["path"] == "/big" else scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def port() -> Iterator[int]:
    server = RunningServer(app).start()
    yield int(server.url.rsplit(":", 1)[1])
    server.stop()


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_pipelined_requests_come_back_in_order(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /bb HTTP/1.1\r\nHost: x\r\n\r\nGET /ccc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _read_until_closed(sock)
    heads = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(heads) == 3
    assert heads[0].endswith(b"\r\n\r\n/a") and b"content-length: 2\r\n" in heads[0]
    assert heads[1].endswith(b"\r\n\r\n") and b"content-length: 3\r\n" in heads[1]  # HEAD: no body
    assert heads[2].endswith(b"\r\n\r\n/ccc") and b"connection: close\r\n" in heads[2]


def test_a_request_on_an_idle_connection_during_a_graceful_stop_is_answered() -> None:
    server = RunningServer(app).start()
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:  # the server has accepted `idle`
            probe.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until_closed(probe).startswith(b"HTTP/1.1 200")
        server.server.should_exit = True  # as SIGTERM or a rolling restart (SIGHUP) does to a worker
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the listener closes in the same step as idle connections are shut down
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.01)
        idle.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = _read_until_closed(idle)
        except ConnectionResetError:
            answer = b"reset"
    server.thread.join(10)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"/late"), answer
    assert b"connection: close\r\n" in answer


def test_chunked_and_large_bodies_arrive_whole(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _read_until_closed(sock)
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert first.endswith(b"\r\n\r\n4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
    assert second.endswith(b"\r\n\r\n" + b"x" * 1_000_000)


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return "info:" + name


def test_writes_of_one_step_become_one_write_and_close_flushes_first() -> None:
    async def scenario() -> RecordingTransport:
        transport = RecordingTransport()
        coalescer = WriteCoalescer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescer.write(b"head\r\n\r\n")
        coalescer.write(b"body")
        assert transport.writes == [] and coalescer.get_write_buffer_size() == 12
        await asyncio.sleep(0)
        assert transport.writes == [b"head\r\n\r\nbody"]
        coalescer.write(b"last")
        coalescer.close()  # flushes before closing
        assert transport.writes[-1] == b"last" and transport.closed
        assert coalescer.get_extra_info("peername") == "info:peername"
        await asyncio.sleep(0)  # the flush scheduled for "last" finds nothing left
        return transport

    assert len(asyncio.run(scenario()).writes) == 2
