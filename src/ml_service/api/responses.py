"""Response helpers of the wire format: compact JSON with sorted keys, as the reference service sends it."""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

# What a hot route answers with: the HTTP status and the JSON body (always `application/json`).
Answer = tuple[int, bytes]
QueryHandler = Callable[[Mapping[str, str]], Answer]

# The response headers Starlette's Response(body, media_type="application/json") sends, in its order.
_JSON_TYPE = (b"content-type", b"application/json")


def dump_json(content: Any) -> bytes:
    """Compact JSON, keys sorted alphabetically (spec §2.1); a NaN or infinite number becomes null.

    json.dumps would write `NaN`, which is not JSON: Totara's json_decode, and most parsers, reject the body.
    """
    try:
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(content), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def _finite(value: Any) -> Any:
    """`value` with every non-finite float inside dicts, lists and tuples replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The raw headers of a JSON answer, exactly as Starlette's Response would send them."""
    return [(b"content-length", str(len(body)).encode("latin-1")), _JSON_TYPE]


def query_params(query_string: bytes) -> dict[str, str]:
    """The query string as Starlette's `request.query_params` sees it: blank values kept, the last of repeats wins.

    Plain strings (no `%` escapes, no `+`) are split directly, which is what parse_qsl does with them, 5x faster.
    """
    text = query_string.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    params: dict[str, str] = {}
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            params[name] = value
    return params


class SortedJSONResponse(Response):
    """`application/json` with compact, key-sorted JSON; the default response class of the app."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dump_json(content)


def business_error(message: str, status_code: int = 200) -> SortedJSONResponse:
    """`{"items": [], "message": ..., "success": false}`: HTTP 200 for spec §2.2/2.3 checks, 400 for D4."""
    return SortedJSONResponse({"items": [], "message": message, "success": False}, status_code=status_code)


def business_error_body(message: str) -> bytes:
    """The body of business_error(message), without building a Response."""
    return dump_json({"items": [], "message": message, "success": False})


class QueryRoute:
    """A GET route answered from its query parameters alone: `handle(params) -> (status, JSON body)`.

    The dispatch middleware calls `handle` on the raw ASGI scope (no Request or Response objects on the hot
    path); `endpoint` is the same answer as a Starlette endpoint (registered on the app for /docs and routing).
    """

    __slots__ = ("handle", "endpoint")

    def __init__(self, handle: QueryHandler) -> None:
        self.handle = handle

        async def endpoint(request: Request) -> Response:
            status, body = handle(query_params(request.scope.get("query_string", b"")))
            return Response(body, status_code=status, media_type="application/json")

        self.endpoint = endpoint
