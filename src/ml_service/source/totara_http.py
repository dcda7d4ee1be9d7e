"""Pull the export from Totara's pluginfile URL (spec §3.3, §4.1, D6): signed requests, 202 retries, streaming."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from ml_service.auth import signed_headers
from ml_service.config import Settings
from ml_service.data.limits import InputLimits, describe_bytes
from ml_service.data.tenant import DataError
from ml_service.source.base import EXPORTS, TENANTS_FILE, ExportSnapshot, SourceError
from ml_service.source.deadline import TransferDeadline
from ml_service.source.staging import staging_prefix, sweep_stale_staging
from ml_service.source.tenants import parse_tenants
from ml_service.source.tls import TLS_ADVICE, is_tls_failure, totara_verify

log = logging.getLogger("ml_service.source")

EXPORT_PATH = "pluginfile.php/1/ml_recommender/export"
CHUNK_BYTES = 1 << 20
_HTTP_URL = re.compile(r"(?i)^https?://")


class _Failure(Exception):
    """One file could not be downloaded; the message is the whole explanation, `kind` the attempt's outcome label."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _NoContent:
    """Totara answered 204 (only meaningful for tenants.csv: multitenancy is off)."""


def export_url(base_url: str, file_name: str) -> str:
    """The pluginfile URL of one export file; a trailing slash on the base does not give `//` (unlike the reference)."""
    return f"{base_url.rstrip('/')}/{EXPORT_PATH}/{file_name}"


class TotaraHttpSource:
    """Downloads tenants.csv, then each tenant's three files, into a fresh staging folder under `staging_root`."""

    def __init__(self, settings: Settings, staging_root: Path, *, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.limits = InputLimits.from_settings(settings)
        self.staging_root = Path(staging_root)
        self._sleep = sleep
        self.description = f"Totara at {settings.totara_url}"
        # Attempts of the last fetch by outcome: the HTTP status ("200", "202", "404"...) or, when no whole answer
        # arrived, the error kind (connect_timeout, connect_error, tls_error, read_timeout, cut_short, deadline,
        # too_large, write_error, transfer_error). The pipeline logs them; /metrics adds them up.
        self.attempts: dict[str, int] = {}

    def fetch(self) -> ExportSnapshot:
        """One snapshot; a failed tenant file fails only that tenant, a failed tenants.csv raises SourceError."""
        base = self.settings.totara_url.strip()
        if not _HTTP_URL.match(base):
            raise SourceError(f"ML_TOTARA_URL={base!r} is invalid: it must start with http:// or https://; nothing was requested.")
        if not self.settings.totara_key:
            raise SourceError("ML_TOTARA_KEY is empty: Totara refuses unsigned downloads; set it to $CFG->ml_service_key.")
        self.attempts = {}
        sweep_stale_staging(self.staging_root)
        staging = self._new_staging_folder()
        try:
            with self._client() as client:
                return self._fetch_into(client, base, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _fetch_into(self, client: httpx.Client, base: str, staging: Path) -> ExportSnapshot:
        tenants_path = staging / TENANTS_FILE
        try:
            outcome = self._download(client, export_url(base, TENANTS_FILE), tenants_path)
        except _Failure as exc:
            raise SourceError(f"Nothing could be fetched: {exc}") from None
        if isinstance(outcome, _NoContent):
            tenants_path.write_text("tenants\n0\n", encoding="utf-8")  # multitenancy off (spec §4.1)
        try:
            tenants = parse_tenants(tenants_path, self.limits.max_record_bytes)
        except DataError as exc:
            raise SourceError(f"{TENANTS_FILE} from {export_url(base, TENANTS_FILE)} cannot be used: {exc}") from exc

        failed: dict[str, str] = {}
        for tenant in tenants:
            fetched: list[Path] = []
            for export in EXPORTS:
                name = f"{export}_{tenant}.csv"
                url = export_url(base, name)
                try:
                    if isinstance(self._download(client, url, staging / name), _NoContent):
                        raise _Failure(
                            f"GET {url} answered 204 (no content), which Totara only sends for {TENANTS_FILE} when "
                            "multitenancy is off: the tenant list and the files disagree; run the export again."
                        )
                    fetched.append(staging / name)
                except _Failure as exc:
                    for path in fetched:
                        path.unlink(missing_ok=True)
                    failed[tenant] = str(exc)
                    log.warning("tenant %s skipped: %s", tenant, exc)
                    break
        return ExportSnapshot(root=staging, tenants=tenants, failed=failed, temporary=True, limits=self.limits)

    def _client(self) -> httpx.Client:
        s = self.settings
        timeout = httpx.Timeout(connect=s.connect_timeout_s, read=s.read_timeout_s, write=s.read_timeout_s, pool=s.connect_timeout_s)
        # TLS is verified only with ML_TOTARA_VERIFY_TLS=1: the reference never verifies, and Totara sites often
        # use internal or self-signed certificates (ML_TOTARA_CA_BUNDLE names their CA).
        # One connection per file (no keep-alive): the download deadline shuts the socket of its own transfer only.
        return httpx.Client(verify=totara_verify(s), timeout=timeout, follow_redirects=False,
                            limits=httpx.Limits(max_keepalive_connections=0))

    def _new_staging_folder(self) -> Path:
        try:
            self.staging_root.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=staging_prefix(), dir=self.staging_root))
        except OSError as exc:
            raise SourceError(f"The staging folder cannot be created in {self.staging_root}: {exc.strerror or exc}") from exc

    def _download(self, client: httpx.Client, url: str, dest: Path) -> Path | _NoContent:
        """Fetch one file to `dest` (via `dest.part`), retrying on 202; raise _Failure with the whole reason."""
        retries = self.settings.download_retries
        for attempt in range(retries + 1):
            headers = signed_headers(self.settings.totara_key, lower=True)  # fresh time and token every attempt
            started = time.monotonic()
            deadline = TransferDeadline(self.limits.download_deadline_s)
            outcome = "transfer_error"
            try:
                with deadline, client.stream("GET", url, headers=headers, extensions={"trace": deadline.trace}) as response:
                    try:
                        log.info("GET %s -> %d (attempt %d of %d)", url, response.status_code, attempt + 1, retries + 1)
                        outcome = str(response.status_code)
                        if response.status_code == 200:
                            return self._save(response, url, dest, started)
                        if response.status_code == 204:
                            return _NoContent()
                        if response.status_code != 202:
                            raise _Failure(_status_message(url, response.status_code))
                    finally:
                        deadline.cancel()  # before the connection closes: the timer must never touch a reused socket
            except _Failure as exc:
                outcome = exc.kind or outcome
                raise
            except httpx.HTTPError as exc:
                dest.with_name(dest.name + ".part").unlink(missing_ok=True)
                failure = _Failure(self._deadline_message(url), "deadline") if deadline.expired else self._transfer_failure(url, exc)
                outcome = failure.kind
                raise failure from None
            finally:
                self.attempts[outcome] = self.attempts.get(outcome, 0) + 1
            if attempt < retries:
                self._sleep(self.settings.download_retry_wait_s)
        raise _Failure(
            f"GET {url} answered 202 (export not ready) {retries + 1} times, {self.settings.download_retry_wait_s:g} s apart: "
            "Totara has no finished export yet; run export_data.php (or wait for the export task) and try again."
        )

    def _transfer_failure(self, url: str, exc: httpx.HTTPError) -> _Failure:
        if isinstance(exc, httpx.ConnectTimeout):
            return _Failure(f"GET {url}: no connection within {self.settings.connect_timeout_s:g} s (ML_CONNECT_TIMEOUT): check the URL and the network.",
                            "connect_timeout")
        if isinstance(exc, httpx.ConnectError):
            if is_tls_failure(exc):
                return _Failure(f"GET {url}: Totara's TLS certificate was refused ({exc}): {TLS_ADVICE}", "tls_error")
            return _Failure(f"GET {url}: cannot connect ({exc}): check ML_TOTARA_URL and that Totara is reachable from this machine.",
                            "connect_error")
        if isinstance(exc, httpx.ReadTimeout):
            return _Failure(f"GET {url}: Totara sent nothing for {self.settings.read_timeout_s:g} s (ML_READ_TIMEOUT): the download was abandoned.",
                            "read_timeout")
        if isinstance(exc, httpx.RemoteProtocolError):
            return _Failure(f"GET {url}: the body was cut short, the connection closed before the whole file arrived ({exc}).", "cut_short")
        return _Failure(f"GET {url}: the transfer failed ({type(exc).__name__}: {exc}).", "transfer_error")

    def _deadline_message(self, url: str, received: int | None = None) -> str:
        got = "" if received is None else f" with {received} bytes received"
        return (
            f"GET {url}: the download took longer than {self.limits.download_deadline_s:g} s (ML_DOWNLOAD_DEADLINE){got}; "
            "the download was abandoned."
        )

    def _save(self, response: httpx.Response, url: str, dest: Path, started: float) -> Path:
        """Stream the body to `dest.part`, check it is complete, then rename it to `dest`.

        The body may not exceed ML_MAX_EXPORT_MB (checked against Content-Length before reading, then as it
        arrives) nor take longer than ML_DOWNLOAD_DEADLINE from the request (checked on each piece as it comes;
        a stalled read is ended by the TransferDeadline's timer).
        """
        part = dest.with_name(dest.name + ".part")
        max_bytes = self.limits.max_export_bytes
        deadline_s = self.limits.download_deadline_s
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise _Failure(
                f"GET {url}: Totara announced {declared} bytes, over the limit of {describe_bytes(max_bytes)} per "
                "export file (ML_MAX_EXPORT_MB raises it); nothing was downloaded.", "too_large"
            )
        received = 0
        try:
            with open(part, "wb") as out:
                for chunk in response.iter_bytes():  # no chunk size: each piece as it arrives, however small
                    received += len(chunk)
                    if received > max_bytes:
                        raise _Failure(
                            f"GET {url}: the body passed the limit of {describe_bytes(max_bytes)} per export file "
                            f"(ML_MAX_EXPORT_MB raises it; announced size: {declared or 'none'}); the download was abandoned.", "too_large"
                        )
                    if time.monotonic() - started > deadline_s:
                        raise _Failure(self._deadline_message(url, received), "deadline")
                    out.write(chunk)
            if declared is not None and declared.isdigit() and response.num_bytes_downloaded < int(declared):
                raise _Failure(f"GET {url}: the body was cut short ({response.num_bytes_downloaded} of {declared} bytes).", "cut_short")
            part.replace(dest)
            return dest
        except OSError as exc:
            raise _Failure(f"GET {url}: cannot write {part}: {exc.strerror or exc}", "write_error") from None
        finally:
            part.unlink(missing_ok=True)


def _status_message(url: str, status: int) -> str:
    if status == 404:
        meaning = (
            "Totara refused the request or does not know the file: check ML_TOTARA_KEY equals $CFG->ml_service_key, "
            "and the clocks (Totara accepts at most 30 s of difference), and that the tenant still exists"
        )
    elif status >= 500:
        meaning = (
            "Totara failed on its side: the recommendations engine may be disabled (enable the feature "
            "ml_recommender) or Totara's error log has the details"
        )
    elif status in (301, 302, 303, 307, 308):
        meaning = "Totara redirected the request: ML_TOTARA_URL is probably not the site's wwwroot (check http vs https)"
    elif status in (401, 403):
        meaning = "access was denied: check ML_TOTARA_URL points at Totara and nothing in between requires a login"
    else:
        meaning = "this is not an answer Totara gives for an export file"
    return f"GET {url} answered HTTP {status}: {meaning}."
