"""Generated HTTP requests over every route (hypothesis), sent and checked against the wire contract.

Used by tests/api/test_fuzz.py (a few hundred requests in CI) and benchmarks/fuzz.py (10,000 against
`ml-service serve`); the contract itself is tests/fuzz_contract.py.
"""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed as hypothesis_seed, settings, strategies as st

from ml_service.data.tenant import ITEM_TYPES
from tests.fuzz_contract import INVALID_AUTH, KNOWN_PATHS, VALID_AUTH, FuzzRequest, RawResponse, check, send

MAX_WELL_FORMED_TARGET = 60_000


@dataclass(frozen=True)
class Served:
    """What the server under test holds, so that valid values can be generated besides invalid ones."""

    tenants: tuple[str, ...]
    users: tuple[str, ...]
    items: tuple[str, ...]


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
