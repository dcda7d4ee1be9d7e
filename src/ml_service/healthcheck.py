"""`ml-service healthcheck`: the report Totara's server/ml/service/cli/healthcheck.php prints (spec §8.3)."""

from __future__ import annotations

from typing import Any, TextIO

import httpx

from ml_service.auth import signed_headers

RESOLVE_ERROR_PREFIX = "Unable to resolve the Totara instance hostname"
RESOLVE_HINT = (
    "The service reports it cannot resolve Totara's domain name. Please check if it has been set correctly in the service."
)


def healthcheck_report(url: str, key: str, out: TextIO) -> int:
    """Call GET /health-check like Totara does (1 s connect, 2 s total) and print Totara's report; 1 if unhealthy."""
    troubles: list[str] = []
    to_service, to_totara = "Unknown", "Unknown"
    info_lines: list[str] = []
    print("Machine Learning Service Healthcheck", file=out)
    print("", file=out)
    print("Totara Information", file=out)
    print(f"$CFG->ml_service_url is set to {url}" if url else "$CFG->ml_service_url is not set", file=out)
    print("$CFG->ml_service_key is set" if key else "$CFG->ml_service_key is not set", file=out)
    if not url or not key:
        troubles.append("The ml_service_url or ml_service_key configuration option have not been defined.")
        to_service = "Unhealthy"
    else:
        try:
            response = httpx.get(
                url.rstrip("/") + "/health-check",
                headers={**signed_headers(key), "User-Agent": "TotaraBot/1.0"},
                timeout=httpx.Timeout(2.0, connect=1.0),
            )
        except httpx.HTTPError as exc:
            response = None
            troubles.append(f"Unable to connect to the service on {url}. Please check if the Machine Learning Service is running. ({exc})")
            to_service = "Unhealthy"
        if response is not None and not 200 <= response.status_code < 300:
            to_service = "Unhealthy"
            troubles.append(_error_message(response))
        elif response is not None:
            to_service, to_totara = "Healthy", "Healthy"
            body: dict[str, Any] = response.json()
            for name, value in (body.get("totara") or {}).items():
                info_lines.append(f"{name}: {value}")
            errors = body.get("errors") or []
            if errors:
                to_totara = "Unhealthy"
                troubles += [RESOLVE_HINT if str(e).startswith(RESOLVE_ERROR_PREFIX) else str(e) for e in errors]
                troubles.append("The service reported problems and may not be healthy. Check the information above.")
    print("", file=out)
    print("Machine Learning Service Information", file=out)
    print(f"Totara to Service connection... {to_service}", file=out)
    print(f"Service to Totara connection... {to_totara}", file=out)
    for line in info_lines:
        print(line, file=out)
    if troubles:
        print("", file=out)
        print("Troubleshooting", file=out)
        for line in troubles:
            print(f" - {line}", file=out)
    return 1 if troubles else 0


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and "error" in body:
            return str(body["error"])
    except ValueError:
        pass
    return response.text
