"""Pure-ASGI middleware besides auth: the access log (without secrets) and HEAD/OPTIONS on every route."""

from __future__ import annotations

import logging
import re
import time
from typing import Awaitable, Callable, Collection, Mapping, Protocol
from urllib.parse import parse_qsl, urlencode

from ml_service.api.auth_middleware import ASGIApp, Receive, Scope, Send
from starlette.requests import Request
from starlette.responses import Response

from ml_service.api.errors import framework_error
from ml_service.api.log_safety import loggable
from ml_service.api.responses import QueryRoute, json_headers, query_params
from ml_service.logs import access_line_sink, log_timestamp

access_log = logging.getLogger("ml_service.access")
Endpoint = Callable[[Request], Awaitable[Response]]

ALLOWED_METHODS = b"GET, HEAD, OPTIONS"
# Query parameters whose values are never written to the log (our routes take none; a caller might try).
_SECRET_WORDS = ("key", "token", "secret", "pass", "auth", "sig")
_SECRET_PATTERN = re.compile("|".join(_SECRET_WORDS).encode(), re.IGNORECASE)


def loggable_query(query_string: bytes) -> str:
    """The query string with the values of secret-looking parameters replaced by `***`."""
    if not query_string:
        return ""
    if not _SECRET_PATTERN.search(query_string):
        return "?" + query_string.decode("latin-1")  # the common case: nothing to mask, nothing to re-encode
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    safe = [(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs]
    return "?" + urlencode(safe)


class RequestRecorder(Protocol):
    def record(self, path: str, status: int, elapsed: float) -> None: ...


class AccessLogMiddleware:
    """One line per request on logger `ml_service.access`: client, method, path and query, status, duration;
    the same timing goes to `tallies` (the request metrics, metrics.RequestTallies) when given.

    Headers are never logged: X-Totara-Ml-Key is a credential. One middleware does both so that a request is
    wrapped and timed once (a second layer cost about 1 µs of the ~100 µs a similar-items answer takes).
    """

    def __init__(self, app: ASGIApp, tallies: RequestRecorder | None = None) -> None:
        self.app = app
        self.tallies = tallies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        logging_on = access_log.isEnabledFor(logging.INFO)
        if not logging_on and self.tallies is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        def send_and_note(message: dict) -> Awaitable[None]:  # type: ignore[type-arg]
            # Not a coroutine: the caller awaits `send`'s own, which saves a coroutine per message (~1 µs).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            if self.tallies is not None:
                self.tallies.record(scope["path"], status, elapsed)
            if logging_on:
                self._log(scope, status, elapsed)

    @staticmethod
    def _log(scope: Scope, status: int, elapsed: float) -> None:
        """Write the request's access line (no header ever: X-Totara-Ml-Key is a credential)."""
        client = scope.get("client")
        line = _LINE % (
            client[0] if client else "-",
            loggable(scope["method"], 32),
            loggable(scope["path"] + loggable_query(scope.get("query_string", b""))),
            status,
            elapsed * 1000.0,
        )
        sink = access_line_sink(access_log)
        if sink is not None:
            # The complete line, timestamp included, goes to the writer thread, which only joins and writes:
            # formatting LogRecords there held the GIL for milliseconds per batch (the p99 of the service).
            sink(f"{log_timestamp(time.time())} {line}")
        else:
            access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, line, None, None, "access"))


_LINE = "%s %s %s %d %.2fms"


class DispatchMiddleware:
    """HEAD is served as GET (the server drops the body); OPTIONS on a known path is 200 with `Allow`; GET on
    a hot route is answered here.

    The hot routes (/user-items, /similar-items) are also registered on the FastAPI app (for /docs and as the
    fallback), but answering them here skips routing, dependency solving and Starlette's Request and Response
    objects: a QueryRoute gets the parsed query string and its (status, body) goes out as two ASGI messages.
    Exceptions still reach the app's 500 handler.
    """

    def __init__(
        self, app: ASGIApp, known_paths: Collection[str], fast_routes: Mapping[str, QueryRoute | Endpoint] | None = None
    ) -> None:
        self.app = app
        self.known_paths = frozenset(known_paths)
        routes = dict(fast_routes or {})
        self.query_routes = {path: r.handle for path, r in routes.items() if isinstance(r, QueryRoute)}
        self.fast_routes = {path: r for path, r in routes.items() if not isinstance(r, QueryRoute)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "GET" or method == "HEAD":
                handle = self.query_routes.get(scope["path"])
                if handle is not None:
                    status, body = handle(query_params(scope["query_string"]))
                    await send({"type": "http.response.start", "status": status, "headers": json_headers(body)})
                    await send({"type": "http.response.body", "body": body})
                    return
            if scope["path"].endswith("\n"):
                # Starlette's route patterns end in `$`, which also matches before a final newline: without this,
                # `/docs%0A` would be served as /docs. An unknown path is a 404 (spec §2.7), whatever it ends with.
                await framework_error(404)(scope, receive, send)
                return
            if method == "HEAD":
                scope = dict(scope, method="GET")
                method = "GET"
            elif method == "OPTIONS":
                if scope["path"] not in self.known_paths:
                    await framework_error(404)(scope, receive, send)
                    return
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"allow", ALLOWED_METHODS), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            endpoint = self.fast_routes.get(scope["path"]) if method == "GET" else None
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
