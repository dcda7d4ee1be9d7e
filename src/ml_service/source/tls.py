"""TLS towards Totara (ML_TOTARA_VERIFY_TLS, ML_TOTARA_CA_BUNDLE), shared by the downloads and the health-check probe."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml_service.config import Settings

TLS_ADVICE = (
    "set ML_TOTARA_CA_BUNDLE to the PEM file of the CA that signed Totara's certificate (with ML_TOTARA_VERIFY_TLS=1), "
    "or ML_TOTARA_VERIFY_TLS=0 to accept it unverified as the reference does"
)


def totara_verify(settings: "Settings") -> ssl.SSLContext | bool:
    """What httpx's `verify` gets: False (the default, as the reference), or a context checking Totara's certificate.

    With verification on, the CA bundle if one is set, else the system's trusted CAs (where an internal CA is
    usually installed), not httpx's bundled public list.
    """
    if not settings.totara_verify_tls:
        return False
    bundle = settings.totara_ca_bundle
    return ssl.create_default_context(cafile=str(bundle) if bundle is not None else None)


def is_tls_failure(exc: BaseException) -> bool:
    """True when a connection error was the TLS handshake refusing the server's certificate."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)
