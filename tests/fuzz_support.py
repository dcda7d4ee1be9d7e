"""Generated HTTP requests over every route (hypothesis) and a checker of the wire contract (spec §2, §3.1, D4).

Used by tests/api/test_fuzz.py (a few hundred requests in CI) and benchmarks/fuzz.py (10,000 against
`ml-service serve`). Requests go out as raw bytes over a socket, so that bad percent-encoding, control bytes,
repeated parameters and oversized targets reach the server exactly as generated.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed as hypothesis_seed, settings, strategies as st

from ml_service.auth import make_token
from ml_service.data.tenant import ITEM_TYPES

QUERY_ROUTES = ("/user-items", "/similar-items")
KNOWN_PATHS = frozenset({*QUERY_ROUTES, "/health-check", "/", "/favicon.ico", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})
ALLOW = "GET, HEAD, OPTIONS"
NOT_FOUND_MSG = "404 Not Found: The requested URL was not found on the server."
VALID_AUTH = ("valid", "valid-upper-hex", "valid-lower-names", "valid-last-of-two")
INVALID_AUTH = (
    "missing", "no-key", "wrong-key", "stale", "future", "not-a-number", "huge-number", "huge-negative",
    "empty-time", "garbage-key", "invalid-last-of-two",
)
# uvicorn answers a request line it cannot parse (control or non-ASCII bytes, a target over ~64 KB) itself.
PARSER_REJECTION = b"Invalid HTTP request received."
MAX_WELL_FORMED_TARGET = 60_000
_SCORE = re.compile(r"[ -][0-9]+\.[0-9]{4}")


@dataclass(frozen=True)
class Served:
    """What the server under test holds, so that valid values can be generated besides invalid ones."""

    tenants: tuple[str, ...]
    users: tuple[str, ...]
    items: tuple[str, ...]


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


# ------------------------------------------------------------------------------------------------ generation
_BAD_ESCAPES = ("%", "%z", "%zz", "%FF", "%C3", "%E2%82", "%00", "%0A", "%0D%0A", "%ED%A0%80", "%E2%80%A8", "%25")
_SPECIAL = st.sampled_from(["", "0", "-1", "+2", " 2", "2 ", "1.5", "1e3", "0x10", "٣", "²", "１２", "NaN", "inf", "None", "[]"])


def _repeated(alphabet: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    """Long strings cheaply (hypothesis' own text strategy is bounded by its buffer size), often at the lengths
    where things change: 19/20 digits (BIGINT), 4,300/4,301 (Python's int-string conversion limit)."""
    boundaries = [n for n in (19, 20, 4300, 4301) if lo <= n <= hi]
    lengths = st.one_of(st.sampled_from(boundaries), st.integers(lo, hi)) if boundaries else st.integers(lo, hi)
    return st.builds(lambda c, n: c * n, st.sampled_from(list(alphabet)), lengths)


def _values(served: Served) -> dict[str, st.SearchStrategy[str]]:
    text = st.text(max_size=24)
    big = _repeated("0179", 18, 5000)
    return {
        "totara_user_id": st.one_of(st.sampled_from(served.users + ("404", "007")), st.integers(-(10**25), 10**25).map(str), big, text, _SPECIAL),
        "item_type": st.one_of(st.sampled_from(ITEM_TYPES), text, st.sampled_from(["ENGAGE_ARTICLE", "engage_article ", "engage"])),
        "tenant": st.one_of(st.sampled_from(served.tenants + ("99", "00", "-1")), text, big, _SPECIAL),
        "n_items": st.one_of(st.integers(-3, 1100).map(str), big, _SPECIAL, text),
        "totara_item_id": st.one_of(
            st.sampled_from(served.items + ("engage_article99", "container_course")),
            st.builds(lambda p, n: p + n, st.sampled_from(ITEM_TYPES), _repeated("9", 1, 5000)),
            text,
        ),
    }


def _valid_values(served: Served) -> dict[str, st.SearchStrategy[str]]:
    """Values the service accepts, so that a good share of requests reach ranking."""
    return {
        "totara_user_id": st.sampled_from(served.users + ("404", "007")),
        "item_type": st.sampled_from(ITEM_TYPES),
        "tenant": st.sampled_from(served.tenants),
        "n_items": st.integers(1, 1000).map(str),
        "totara_item_id": st.sampled_from(served.items + ("engage_article99",)),
    }


@st.composite
def _encoded(draw: st.DrawFn, value: str) -> str:
    """`value` percent-encoded in one of the ways clients do, sometimes with a broken escape added."""
    how = draw(st.sampled_from(["quote", "quote", "quote_plus", "raw", "bad-escape"]))
    if how == "quote_plus":
        return urllib.parse.quote_plus(value)
    if how == "raw" and re.fullmatch(r"[A-Za-z0-9_.~-]*", value):
        return value
    encoded = urllib.parse.quote(value, safe="")
    if how == "bad-escape":
        cut = draw(st.integers(0, len(encoded)))
        encoded = encoded[:cut] + draw(st.sampled_from(_BAD_ESCAPES)) + encoded[cut:]
    return encoded


@st.composite
def _query(draw: st.DrawFn, route: str, served: Served) -> bytes | None:
    wild, valid = _values(served), _valid_values(served)
    names = ("totara_user_id", "item_type", "tenant", "n_items") if route == "/user-items" else (
        ("totara_item_id", "tenant", "n_items") if route == "/similar-items" else ()
    )
    if not names and draw(st.integers(0, 3)) > 0:
        return draw(st.sampled_from([None, None, b""]))
    fields: list[str] = []
    for name in names:
        shape = draw(st.sampled_from(["present"] * 12 + ["missing", "empty", "twice", "no-equals"]))
        if shape == "missing":
            continue
        if shape == "no-equals":
            fields.append(name)
            continue
        values = wild if draw(st.integers(0, 2)) == 0 else valid  # each parameter valid 2 times in 3
        value = "" if shape == "empty" else draw(values[name])
        fields.append(f"{name}={draw(_encoded(value))}")
        if shape == "twice":
            fields.append(f"{name}={draw(_encoded(draw(wild[name])))}")
    for extra_name, extra_value in draw(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=2)):
        fields.append(f"{draw(_encoded(extra_name))}={draw(_encoded(extra_value))}")
    if draw(st.integers(0, 19)) == 0:
        fields.append("api_key=" + draw(st.sampled_from(["hunter2", "%zz"])))
    if draw(st.integers(0, 29)) == 0:
        fields.append("pad=" + "x" * draw(st.integers(1000, MAX_WELL_FORMED_TARGET - 1000)))
    fields = draw(st.permutations(fields))
    separator = draw(st.sampled_from(["&", "&", "&", "&&", ";"]))
    return separator.join(fields).encode("ascii")


_PATHS = (
    ["/user-items"] * 8 + ["/similar-items"] * 8 + ["/health-check"] * 4 + ["/"] * 2
    + ["/favicon.ico", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/user-items/", "//user-items", "/User-Items",
       "/similar-items/x", "/health-check/", "/nothing", "/index.php", "/../etc/passwd", "*"]
)


@st.composite
def _raw_path(draw: st.DrawFn) -> bytes:
    path = draw(st.sampled_from(_PATHS))
    how = draw(st.sampled_from(["plain"] * 6 + ["escaped-letter", "suffix", "text"]))
    if how == "escaped-letter" and len(path) > 2:  # `/user%2Ditems` is /user-items once decoded
        at = draw(st.integers(1, len(path) - 1))
        path = path[:at] + "%%%02X" % ord(path[at]) + path[at + 1:]
    elif how == "suffix":
        path += draw(st.sampled_from(list(_BAD_ESCAPES) + ["%0Aforged%20200", "%0A", "%1B[31m", "/" + "a" * 3000]))
    elif how == "text":
        path = "/" + urllib.parse.quote(draw(st.text(max_size=30)), safe="/")
    return path.encode("ascii")


@st.composite
def fuzz_requests(draw: st.DrawFn, served: Served) -> FuzzRequest:
    """A request to any route: mostly well-formed HTTP with valid or invalid parameters and authentication."""
    method = draw(st.sampled_from(["GET"] * 14 + ["HEAD"] * 2 + ["OPTIONS"] * 2 + ["POST", "PUT", "DELETE", "PATCH", "TRACE"]))
    auth = draw(st.sampled_from(list(VALID_AUTH[:1]) * 24 + list(VALID_AUTH[1:]) + list(INVALID_AUTH)))
    raw_path = draw(_raw_path())
    path = urllib.parse.unquote(raw_path.decode("ascii"))
    query = draw(_query(path, served))
    assume(len(raw_path) + len(query or b"") < MAX_WELL_FORMED_TARGET)  # clear of the parser's ~64 KB limit
    request = FuzzRequest(method, raw_path, query, auth, True)
    shape = draw(st.integers(0, 39))
    if shape == 0:  # a byte HTTP does not allow in a request target
        bad = draw(st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\xff", b"\xc3\xa9", b"\t", b"\x1b"]))
        at = draw(st.integers(1, len(raw_path)))
        return FuzzRequest(method, raw_path[:at] + bad + raw_path[at:], query, auth, False)
    if shape == 1:  # a target longer than the HTTP parser takes
        return FuzzRequest(method, raw_path, b"pad=" + b"x" * draw(st.integers(66_000, 200_000)), auth, False)
    return request


# ------------------------------------------------------------------------------------------------ sending
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


# ------------------------------------------------------------------------------------------------ running
@dataclass
class FuzzReport:
    """Counts by route: requests, statuses, 5xx, contract violations, and the first few examples of each."""

    by_route: dict[str, dict[str, Any]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    max_examples: int = 20

    def add(self, request: FuzzRequest, response: RawResponse | None, problems: list[str]) -> None:
        row = self.by_route.setdefault(request.route, {"requests": 0, "statuses": Counter(), "5xx": 0, "violations": 0})
        row["requests"] += 1
        row["statuses"][str(response.status) if response else "closed"] += 1
        row["5xx"] += bool(response and response.status >= 500)
        row["violations"] += bool(problems)
        if problems and len(self.examples) < self.max_examples:
            self.examples.append({"request": request.describe(), "status": response.status if response else None, "problems": problems})

    @property
    def requests(self) -> int:
        return sum(row["requests"] for row in self.by_route.values())

    @property
    def five_xx(self) -> int:
        return sum(row["5xx"] for row in self.by_route.values())

    @property
    def violations(self) -> int:
        return sum(row["violations"] for row in self.by_route.values())

    def to_json(self) -> dict[str, Any]:
        routes = {name: {**row, "statuses": dict(sorted(row["statuses"].items()))} for name, row in sorted(self.by_route.items())}
        return {"requests": self.requests, "5xx": self.five_xx, "contract_violations": self.violations, "by_route": routes,
                "examples": self.examples}


def sweep(served: Served) -> list[FuzzRequest]:
    """Every route (and an unknown path) x the methods x a valid and a missing authentication, with valid
    parameters: the corners a random sample of a few hundred may miss."""
    queries = {
        "/user-items": f"totara_user_id={served.users[0]}&item_type={ITEM_TYPES[0]}&tenant={served.tenants[0]}&n_items=5",
        "/similar-items": f"totara_item_id={served.items[0]}&tenant={served.tenants[0]}&n_items=5",
    }
    return [
        FuzzRequest(method, path.encode("ascii"), queries[path].encode("ascii") if path in queries else None, auth, True)
        for path in sorted(KNOWN_PATHS | {"/nothing"})
        for method in ("GET", "HEAD", "OPTIONS", "POST")
        for auth in ("valid", "missing")
    ]


def run_fuzz(
    host: str, port: int, key: str, served: Served, requests: int, *, seed: int | None = None, derandomize: bool = False
) -> FuzzReport:
    """Send the sweep, then `requests` generated requests to a running server and check each answer; never stops
    at a failure (the report counts them)."""
    report = FuzzReport()
    for request in sweep(served):
        response = send(host, port, request.to_bytes(key))
        report.add(request, response, check(request, response, key))

    @settings(
        max_examples=requests, database=None, deadline=None, phases=[Phase.generate], derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz_requests(served))
    def one(request: FuzzRequest) -> None:
        response = send(host, port, request.to_bytes(key))
        report.add(request, response, check(request, response, key))

    if seed is not None and not derandomize:
        one = hypothesis_seed(seed)(one)
    one()
    return report
