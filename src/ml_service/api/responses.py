"""Response helpers of the wire format: compact JSON with sorted keys, as the reference service sends it."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


def dump_json(content: Any) -> bytes:
    """Compact JSON, keys sorted alphabetically (spec §2.1)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


class SortedJSONResponse(Response):
    """`application/json` with compact, key-sorted JSON; the default response class of the app."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dump_json(content)


def business_error(message: str, status_code: int = 200) -> SortedJSONResponse:
    """`{"items": [], "message": ..., "success": false}`: HTTP 200 for spec §2.2/2.3 checks, 400 for D4."""
    return SortedJSONResponse({"items": [], "message": message, "success": False}, status_code=status_code)
