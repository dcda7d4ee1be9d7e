"""The wire contract (spec §2, §3.1, D4) as a checker of one raw HTTP exchange, for the fuzz test and benchmark.

A FuzzRequest is sent as raw bytes over its own socket, so that bad percent-encoding, control bytes, repeated
parameters and oversized targets reach the server exactly as written; `check` lists every way the answer breaks
the contract.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ml_service.auth import make_token

QUERY_ROUTES = ("/user-items", "/similar-items")
KNOWN_PATHS = frozenset({*QUERY_ROUTES, "/health-check", "/", "/favicon.ico", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
ALLOW = "GET, HEAD, OPTIONS"
VALID_AUTH = ("valid", "valid-upper-hex", "valid-lower-names", "valid-last-of-two")
INVALID_AUTH = (
    "missing", "no-key", "wrong-key", "stale", "future", "not-a-number", "huge-number", "huge-negative",
    "empty-time", "garbage-key", "invalid-last-of-two",
)
# uvicorn answers a request line it cannot parse (control or non-ASCII bytes, a target over ~64 KB) itself.
PARSER_REJECTION = b"Invalid HTTP request received."
_SCORE = re.compile(r"[ -][0-9]+\.[0-9]{4}")


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request; `path` is what the app sees (uvicorn percent-decodes the raw path)."""

    method: str
    raw_path: bytes
    raw_query: bytes | None  # None: no `?` at all
    auth: str
    well_formed: bool

    @property
    def path(self) -> str:
        text = self.raw_path.decode("latin-1")
        return urllib.parse.unquote(text) if "%" in text else text

    @property
    def route(self) -> str:
        """The label results are counted under."""
        if not self.well_formed:
            return "malformed HTTP"
        return self.path if self.path in KNOWN_PATHS else "unknown path"

    def to_bytes(self, key: str, now: float | None = None) -> bytes:
        """The request as sent, signed (or mis-signed, as `auth` says) at `now`."""
        target = self.raw_path + (b"" if self.raw_query is None else b"?" + self.raw_query)
        lines = [self.method.encode("ascii") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
                 b"User-Agent: TotaraBot/1.0", b"Content-Length: 0"]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in auth_headers(self.auth, key, now)]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def describe(self, limit: int = 300) -> str:
        text = f"{self.method} {self.raw_path!r} ?{self.raw_query!r} auth={self.auth}"
        return text if len(text) <= limit else text[:limit] + "..."


def auth_headers(kind: str, key: str, now: float | None = None) -> list[tuple[str, str]]:
    """The X-Totara-Time / X-Totara-Ml-Key headers of one authentication variant (spec §3.1)."""
    stamp = str(int(time.time() if now is None else now))
    token = make_token(stamp, key)
    variants: dict[str, list[tuple[str, str]]] = {
        "valid": [("X-Totara-Time", stamp), ("X-Totara-Ml-Key", token)],
        "valid-upper-hex": [("X-Totara-Time", stamp), ("X-Totara-Ml-Key", token.upper())],
        "valid-lower-names": [("x-totara-time", stamp), ("x-totara-ml-key", token)],
        "valid-last-of-two": [("X-Totara-Time", "garbage"), ("X-Totara-Time", stamp), ("X-Totara-Ml-Key", token)],
        "missing": [],
        "no-key": [("X-Totara-Time", stamp)],
        "wrong-key": [("X-Totara-Time", stamp), ("X-Totara-Ml-Key", make_token(stamp, key + "x"))],
        "stale": [("X-Totara-Time", str(int(stamp) - 30)), ("X-Totara-Ml-Key", make_token(str(int(stamp) - 30), key))],
        "future": [("X-Totara-Time", str(int(stamp) + 3600)), ("X-Totara-Ml-Key", make_token(str(int(stamp) + 3600), key))],
        "not-a-number": [("X-Totara-Time", "1_700_000_000"), ("X-Totara-Ml-Key", token)],
        "huge-number": [("X-Totara-Time", "9" * 4300), ("X-Totara-Ml-Key", token)],
        "huge-negative": [("X-Totara-Time", "-" + "9" * 4300), ("X-Totara-Ml-Key", token)],
        "empty-time": [("X-Totara-Time", ""), ("X-Totara-Ml-Key", token)],
        "garbage-key": [("X-Totara-Time", stamp), ("X-Totara-Ml-Key", "\xff" * 64)],
        "invalid-last-of-two": [("X-Totara-Time", stamp), ("X-Totara-Time", "0"), ("X-Totara-Ml-Key", token)],
    }
    return variants[kind]


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    header_names: list[str] = field(default_factory=list)


def send(host: str, port: int, request: bytes, timeout_s: float = 15.0) -> RawResponse | None:
    """One request on its own connection (`Connection: close`); None when the server closed without answering."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may reject a huge request before reading all of it; its answer is still read
        chunks: list[bytes] = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    names: list[str] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
        names.append(name.strip().lower())
    return RawResponse(status, headers, body, names)


# ------------------------------------------------------------------------------------------------ the contract
def check(request: FuzzRequest, response: RawResponse | None, key: str = "") -> list[str]:
    """Every way the response breaks the wire contract for this request (empty: it obeys it)."""
    if response is None:
        return [] if not request.well_formed else ["the server closed the connection without an answer"]
    problems: list[str] = []
    if response.status >= 500:
        problems.append(f"HTTP {response.status}")
    if not request.well_formed:
        if response.status != 400 or response.body != PARSER_REJECTION:
            problems.append(f"a malformed request got {response.status} {response.body[:80]!r}, not the parser's 400")
        return problems
    length = response.headers.get("content-length")
    if request.method != "HEAD" and length is not None and int(length) != len(response.body):
        problems.append(f"content-length {length} but {len(response.body)} body bytes")
    if request.method == "HEAD" and response.body:
        problems.append("a HEAD answer has a body")
    path = request.path
    public = path in PUBLIC_PATHS and not request.raw_query
    if not public and request.auth not in VALID_AUTH:
        return problems + _unauthorised(response, key)
    if request.method == "OPTIONS":
        if path in KNOWN_PATHS:
            if response.status != 200 or response.headers.get("allow") != ALLOW or response.body:
                problems.append(f"OPTIONS on {path}: {response.status} allow={response.headers.get('allow')!r}")
        else:
            problems += _framework_error(response, 404, request.method)
        return problems
    if request.method not in ("GET", "HEAD"):
        return problems + _framework_error(response, 405 if path in KNOWN_PATHS else 404, request.method)
    if path in QUERY_ROUTES:
        problems += _recommendations(request, response)
    elif path == "/health-check":
        problems += _health(request, response)
    elif path == "/":
        problems += _expect(response, 200, "text/html; charset=utf-8", b"Totara ML Server", request.method)
    elif path == "/favicon.ico":
        problems += _expect(response, 200, "image/vnd.microsoft.icon", b"\x00\x00\x01\x00", request.method)
    elif path == "/openapi.json":
        problems += _expect(response, 200, "application/json", b'{"openapi"', request.method)
    elif path in ("/docs", "/docs/oauth2-redirect"):
        problems += _expect(response, 200, "text/html; charset=utf-8", b"<!", request.method)
    else:
        problems += _framework_error(response, 404, request.method)
    return problems


def _unauthorised(response: RawResponse, key: str) -> list[str]:
    problems = []
    if response.status != 401 or response.headers.get("content-type") != "text/plain; charset=utf-8":
        problems.append(f"an unauthenticated request got {response.status} {response.headers.get('content-type')}")
    elif response.body and not response.body.startswith(b"Invalid access\n"):
        problems.append(f"401 body {response.body[:60]!r}")
    if key and key.encode() in response.body:
        problems.append("the 401 body shows the key")
    return problems


def _strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


def _framework_error(response: RawResponse, status: int, method: str) -> list[str]:
    problems = []
    if response.status != status or response.headers.get("content-type") != "application/json":
        return [f"expected the {status} JSON error, got {response.status} {response.headers.get('content-type')}"]
    if "allow" in response.headers:
        problems.append(f"{status} with an Allow header")
    if method != "HEAD":
        try:
            body = _strict_json(response.body)
        except ValueError as exc:
            return [f"{status} body is not JSON: {exc}"]
        if set(body) != {"error", "msg"} or body["error"] != "true" or not str(body["msg"]).startswith(str(status)):
            problems.append(f"{status} body {response.body[:100]!r}")
    return problems


def _expect(response: RawResponse, status: int, content_type: str, starts: bytes, method: str) -> list[str]:
    if response.status != status or response.headers.get("content-type") != content_type:
        return [f"expected {status} {content_type}, got {response.status} {response.headers.get('content-type')}"]
    if method != "HEAD" and starts not in response.body[:4000]:
        return [f"body does not hold {starts!r}: {response.body[:80]!r}"]
    return []


def _recommendations(request: FuzzRequest, response: RawResponse) -> list[str]:
    if response.status not in (200, 400) or response.headers.get("content-type") != "application/json":
        return [f"{request.path}: {response.status} {response.headers.get('content-type')}"]
    if request.method == "HEAD":
        return []
    try:
        body = _strict_json(response.body)
    except ValueError as exc:
        return [f"{request.path}: not JSON ({exc}): {response.body[:100]!r}"]
    if not isinstance(body, dict):
        return [f"{request.path}: body is not an object"]
    if body.get("success") is True:
        if response.status != 200 or set(body) != {"items", "success"} or not isinstance(body["items"], list):
            return [f"{request.path}: success body {response.body[:100]!r} with {response.status}"]
        params = dict(urllib.parse.parse_qsl((request.raw_query or b"").decode("latin-1"), keep_blank_values=True))
        if len(body["items"]) > int(params.get("n_items", "0").strip() or 0):
            return [f"{request.path}: {len(body['items'])} items for n_items={params.get('n_items')!r}"]
        for pair in body["items"]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                return [f"{request.path}: item {pair!r} is not [id, score] strings"]
            if not _SCORE.fullmatch(pair[1]):
                return [f"{request.path}: score {pair[1]!r} is not ' .4f'"]
        return []
    if set(body) != {"items", "message", "success"} or body["items"] != [] or body["success"] is not False:
        return [f"{request.path}: error body {response.body[:100]!r}"]
    if not isinstance(body["message"], str) or not body["message"]:
        return [f"{request.path}: empty message"]
    if response.status == 400 and not body["message"].startswith("Bad request:"):
        return [f"{request.path}: 400 message {body['message'][:80]!r}"]
    return []


def _health(request: FuzzRequest, response: RawResponse) -> list[str]:
    if response.status != 200 or response.headers.get("content-type") != "application/json":
        return [f"/health-check: {response.status} {response.headers.get('content-type')}"]
    if request.method == "HEAD":
        return []
    try:
        body = _strict_json(response.body)
    except ValueError as exc:
        return [f"/health-check: not JSON ({exc})"]
    if not isinstance(body.get("success"), bool) or not isinstance(body.get("totara"), dict):
        return [f"/health-check: body {response.body[:100]!r}"]
    if any(isinstance(v, (dict, list)) for v in body["totara"].values()):
        return ["/health-check: `totara` holds a nested value"]
    if body["success"] is False and not (isinstance(body.get("errors"), list) and all(isinstance(e, str) for e in body["errors"])):
        return ["/health-check: failure without a list of error texts"]
    return []
