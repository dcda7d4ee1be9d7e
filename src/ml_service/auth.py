"""The time-bound SHA-256 token Totara and the service exchange: make and verify, constant-time compare."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

# Totara → service: the reference accepts |now - t| strictly below 30 s (spec §3.1).
SERVICE_MAX_SKEW_S = 30
# Service → Totara: Totara's validator accepts the inclusive window [now-30, now+30] (spec §3.2).
TOTARA_MAX_SKEW_S = 30
# Unix seconds as Totara writes them (PHP time()). Not int(): it accepts `1_700_000_000` and thousands of digits,
# and a 4,300-digit negative time made the variance too long to print (a 500 on an unauthenticated request).
_UNIX_SECONDS = re.compile(r"[+-]?[0-9]{1,20}")


def parse_unix_seconds(text: str) -> int | None:
    """The header's whole number of seconds (surrounding spaces allowed), or None if it is not one."""
    text = text.strip()
    return int(text) if _UNIX_SECONDS.fullmatch(text) else None


def make_token(time_text: str, key: str) -> str:
    """Lower-case hex SHA-256 of the time text followed by the key, no separator."""
    return hashlib.sha256((time_text + key).encode("utf-8")).hexdigest()


def signed_headers(key: str, now: float | None = None, *, lower: bool = False) -> dict[str, str]:
    """Fresh auth headers for one request: X-Totara-Time and X-Totara-Ml-Key (lower-case names if asked)."""
    stamp = str(int(time.time() if now is None else now))
    headers = {"X-Totara-Time": stamp, "X-Totara-Ml-Key": make_token(stamp, key)}
    return {k.lower(): v for k, v in headers.items()} if lower else headers


@dataclass(frozen=True)
class AuthResult:
    """The outcome of checking one request's token."""

    ok: bool
    reason: str  # "" when ok; otherwise one sentence saying what was wrong
    clock_skew: bool  # True when the time check failed
    service_time: int
    variance: int


def verify_request(time_header: str | None, key_header: str | None, key: str, now: float | None = None) -> AuthResult:
    """Check a Totara → service request (spec §3.1, D5): strict 30 s window, constant-time key compare."""
    service_time = int(time.time() if now is None else now)
    if time_header is None or time_header == "":
        return AuthResult(False, "The X-Totara-Time header is missing.", True, service_time, service_time)
    request_time = parse_unix_seconds(time_header)
    if request_time is None:
        return AuthResult(False, "The X-Totara-Time header is not a whole number of Unix seconds.", True, service_time, service_time)
    variance = abs(service_time - request_time)
    if variance >= SERVICE_MAX_SKEW_S:
        return AuthResult(
            False,
            f"The clocks were not in sync: the request is {variance} s away from the service time "
            f"(allowed: under {SERVICE_MAX_SKEW_S} s).",
            True,
            service_time,
            variance,
        )
    if not key_header:
        return AuthResult(False, "The X-Totara-Ml-Key header is missing.", False, service_time, variance)
    if not key:
        return AuthResult(False, "The service has no ML_TOTARA_KEY, so no request can be accepted.", False, service_time, variance)
    expected = make_token(time_header, key)
    if not hmac.compare_digest(expected.encode("ascii"), key_header.strip().lower().encode("ascii", "replace")):
        return AuthResult(False, "The X-Totara-Ml-Key does not match: check that ML_TOTARA_KEY equals $CFG->ml_service_key.", False, service_time, variance)
    return AuthResult(True, "", False, service_time, variance)


def verify_totara_side(time_header: str | None, key_header: str | None, key: str, now: float | None = None) -> bool:
    """Totara's own validator (spec §3.2/3.3): both headers non-empty, time not 0, inclusive ±30 s, hash equal."""
    if not key or not time_header or not key_header or time_header.strip() == "0":
        return False
    request_time = parse_unix_seconds(time_header)
    if request_time is None:
        return False
    current = int(time.time() if now is None else now)
    if not current - TOTARA_MAX_SKEW_S <= request_time <= current + TOTARA_MAX_SKEW_S:
        return False
    return hmac.compare_digest(make_token(time_header, key), key_header)
