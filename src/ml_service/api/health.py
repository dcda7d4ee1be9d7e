"""`/health-check` (spec §2.5, D8): Totara's flat `totara` object built step by step, plus our `service` details."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ml_service.auth import AuthResult
from ml_service.config import Settings
from ml_service.serving import Recommender
from ml_service.source.tls import TLS_ADVICE, is_tls_failure, totara_verify

PROBE_PATH = "/totara/webapi/ajax.php"
PROBE_BODY = {"operationName": "totara_webapi_status_nosession", "variables": {}, "extensions": {}}

NO_HOSTNAME = "Unable to get Totara instance hostname"
NO_DNS = "Unable to resolve the Totara instance hostname: {}"
PROBE_HTTP_ERROR = "Unable to communicate with Totara, there was an error with the response: {}"
PROBE_TIMEOUT = "Timed out trying to connect to Totara (try again in a few seconds): {}"
PROBE_OTHER = "Unable to communicate with Totara: {}"
PROBE_NOT_OK = "Could not connect to Totara instance. Please check your URL is correct."
SUMMARY_KEYS = ("TIMESTAMP", "ALGORITHM", "TENANT_ID", "MSG")


class SchedulerInfo(Protocol):
    """What the health check reads from the training scheduler (any object with these attributes)."""

    @property
    def next_run_at(self) -> float | None: ...

    @property
    def running(self) -> bool: ...


class ProbeError(Exception):
    """A health step failed; the message is the exact error text Totara's CLI shows."""


@dataclass(frozen=True)
class TotaraProbe:
    """Reaches Totara as the reference does: DNS, then the GraphQL status query (spec §4.3), both time-capped."""

    dns_timeout_s: float = 0.3
    graphql_timeout_s: float = 1.5
    total_budget_s: float = 1.75  # DNS + probe together stay inside Totara's 2 s limit for the whole call
    verify: ssl.SSLContext | bool = False  # Totara's certificate is checked only with ML_TOTARA_VERIFY_TLS=1

    @classmethod
    def from_settings(cls, settings: Settings) -> "TotaraProbe":
        """The probe with the downloads' TLS settings (ML_TOTARA_VERIFY_TLS, ML_TOTARA_CA_BUNDLE)."""
        return cls(verify=totara_verify(settings))

    async def resolve(self, hostname: str) -> str:
        """The first address of `hostname`, IPv4 preferred; ProbeError with the resolver's message."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(hostname, None, type=socket.SOCK_STREAM), timeout=self.dns_timeout_s
            )
        except asyncio.TimeoutError:
            raise ProbeError(NO_DNS.format(f"no answer from the resolver within {self.dns_timeout_s:g} s")) from None
        except OSError as exc:
            raise ProbeError(NO_DNS.format(exc)) from None
        if not infos:
            raise ProbeError(NO_DNS.format("the resolver returned no address"))
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return str(infos[0][4][0])

    async def graphql_status(self, base_url: str, timeout_s: float | None = None) -> tuple[bool, float]:
        """(status is `ok`, elapsed seconds) of Totara's no-session status query; ProbeError on failure.

        The whole exchange is capped at `timeout_s` (default graphql_timeout_s, 1.5 s as in the reference).
        """
        cap = self.graphql_timeout_s if timeout_s is None else max(0.05, min(timeout_s, self.graphql_timeout_s))
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(verify=self.verify, timeout=cap) as client:
                response = await asyncio.wait_for(client.post(base_url + PROBE_PATH, json=PROBE_BODY), timeout=cap)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                document = response.json()
        except httpx.HTTPStatusError as exc:
            raise ProbeError(PROBE_HTTP_ERROR.format(exc)) from None
        except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
            raise ProbeError(PROBE_TIMEOUT.format(str(exc) or f"no answer within {cap:.2g} s")) from None
        except Exception as exc:  # connection refused, TLS, invalid JSON: all "unable to communicate"
            reason = str(exc) or type(exc).__name__
            if is_tls_failure(exc):
                reason = f"Totara's TLS certificate was refused ({reason}): {TLS_ADVICE}"
            raise ProbeError(PROBE_OTHER.format(reason)) from None
        data = document.get("data", document) if isinstance(document, dict) else None
        try:
            status = data["totara_webapi_status"]["status"]  # type: ignore[index]
        except (KeyError, TypeError):
            status = None
        return status == "ok", round(elapsed, 6)


def last_training_summary(log_path: Path) -> str | None:
    """The Python-dict text of the rows sharing the last row's TIMESTAMP (spec §2.5 step 6); None if no rows."""
    try:
        with open(log_path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not rows:
        return None
    last = rows[-1].get("TIMESTAMP")
    latest = [row for row in rows if row.get("TIMESTAMP") == last]
    return str({key: ", ".join(str(row.get(key) or "") for row in latest) for key in SUMMARY_KEYS})


async def health_report(
    *,
    totara_url: str,
    logs_summary: Path,
    recommender: Recommender,
    auth: AuthResult | None,
    probe: TotaraProbe,
    scheduler: SchedulerInfo | None,
    now: float,
) -> dict[str, Any]:
    """The whole /health-check body: `success`, `totara` (+ `errors` on failure) and `service`."""
    totara: dict[str, Any] = {}
    error = await _totara_steps(totara, totara_url, recommender, auth, probe, logs_summary, now)
    body: dict[str, Any] = {"success": error is None, "totara": totara, "service": service_details(recommender, scheduler, now)}
    if error is not None:
        body["errors"] = [error]
    return body


async def _totara_steps(
    totara: dict[str, Any],
    url: str,
    recommender: Recommender,
    auth: AuthResult | None,
    probe: TotaraProbe,
    logs_summary: Path,
    now: float,
) -> str | None:
    """Fill `totara` step by step; return the error text of the first failing step, or None."""
    try:
        hostname = urlsplit(url).hostname if url else None
    except ValueError:
        hostname = None
    if not hostname:
        return NO_HOSTNAME
    totara["url"] = url
    started = time.perf_counter()
    try:
        totara["totara_ip"] = await probe.resolve(hostname)
        remaining = probe.total_budget_s - (time.perf_counter() - started)
        healthy, elapsed = await probe.graphql_status(url, timeout_s=remaining)
    except ProbeError as exc:
        return str(exc)
    totara["elapsed_seconds"] = elapsed
    totara["service_time"] = auth.service_time if auth is not None else int(now)
    totara["variance"] = auth.variance if auth is not None else 0
    if not healthy:
        return PROBE_NOT_OK
    if not recommender.state.indexes:
        totara["recommendation_model"] = "false"
        return None
    totara["recommendation_model"] = "true"
    exists = logs_summary.is_file()
    totara["logs_file_exists"] = "true" if exists else "false"
    if exists:
        summary = last_training_summary(logs_summary)
        if summary is not None:
            totara["last_recommendation_model_training"] = summary
    return None


def service_details(recommender: Recommender, scheduler: SchedulerInfo | None, now: float) -> dict[str, Any]:
    """Our own details (D8): every served tenant's model, the last run's per-tenant states, the next run."""
    state = recommender.state
    tenants: dict[str, Any] = {}
    for tenant, index in state.indexes.items():
        meta = index.meta
        trained_at = _trained_at(meta)
        tenants[tenant] = {
            "version": index.version,
            "algorithm": index.model.algorithm,
            "trained_at": meta.get("created_at") or "",
            "age_seconds": int(now - trained_at) if trained_at is not None else None,
            "metrics": dict(index.model.metrics),
            "users": index.n_users,
            "items": index.n_items,
            "size_bytes": _size_of(meta),
        }
    for tenant, status in state.status.items():
        entry = tenants.setdefault(tenant, {})
        entry["last_run_state"] = status.get("state")
        entry["last_run_msg"] = status.get("msg")
    details: dict[str, Any] = {"tenants": tenants, "store": recommender.store_health()}
    if scheduler is not None:
        details["next_training"] = scheduler.next_run_at
        details["training_running"] = bool(scheduler.running)
    return details


def _trained_at(meta: dict[str, Any]) -> float | None:
    text = meta.get("created_at")
    if not isinstance(text, str) or not text:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def _size_of(meta: dict[str, Any]) -> int:
    files = meta.get("files")
    if not isinstance(files, dict):
        return 0
    return sum(int(spec.get("size", 0)) for spec in files.values() if isinstance(spec, dict))
