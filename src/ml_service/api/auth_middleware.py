"""Pure-ASGI authentication of Totara's requests (spec §3.1, D5), run before routing on every request."""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, MutableMapping

from ml_service.auth import AuthResult, verify_request

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Only these exact paths with an empty query string are public (`/?x=1` needs authentication, as in the reference).
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
AUTH_STATE_KEY = "auth"  # request.state.auth: the AuthResult of this request (service_time, variance)
_TIME_HEADER = b"x-totara-time"
_KEY_HEADER = b"x-totara-ml-key"


def auth_result_of(scope: Scope) -> AuthResult | None:
    """The AuthResult recorded for this request, or None for a public path."""
    state = scope.get("state")
    return state.get(AUTH_STATE_KEY) if isinstance(state, dict) else None


def rejection_text(result: AuthResult) -> str:
    """The 401 body: the reference's lines, the precise reason, never the request's headers (they hold the key)."""
    lines = ["Invalid access"]
    if result.clock_skew:
        lines.append("The clocks were not in sync")
    lines += ["", result.reason, f"service_time: {result.service_time}", f"variance: {result.variance}"]
    return "\n".join(lines) + "\n"


class SecretKey:
    """The shared key, wrapped so that no repr (middleware lists, tracebacks, debug logs) ever shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "SecretKey(***)"


class AuthMiddleware:
    """Rejects unauthenticated requests with HTTP 401 text/plain before any routing (so unknown paths give 401)."""

    def __init__(self, app: ASGIApp, key: SecretKey | str, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self._key = key if isinstance(key, SecretKey) else SecretKey(key)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["path"] in PUBLIC_PATHS and not scope.get("query_string")):
            await self.app(scope, receive, send)
            return
        time_header = key_header = None
        for name, value in scope["headers"]:
            if name == _TIME_HEADER:
                time_header = value.decode("latin-1")
            elif name == _KEY_HEADER:
                key_header = value.decode("latin-1")
        result = verify_request(time_header, key_header, self._key.value, now=self.clock())
        state = scope.get("state")
        if not isinstance(state, dict):
            state = scope["state"] = {}
        state[AUTH_STATE_KEY] = result
        if result.ok:
            await self.app(scope, receive, send)
            return
        body = rejection_text(result).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
