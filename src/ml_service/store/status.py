"""Files at the store root that describe the whole store: the STATE change token and status.json of the last runs.

status.json: {"format_version": 1, "written_at": ..., "tenants": {tenant: {"state": ..., "msg": ...}},
"absent_runs": {tenant: consecutive runs whose tenants.csv did not list it}}. Only training runs write it, and
they hold the run lock (runlock.py), so a read-modify-write here never races another writer.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any, Mapping, Union

from ml_service.store.backend import Backend, as_backend
from ml_service.store.format import FORMAT_VERSION, json_bytes, utc_now_iso

log = logging.getLogger("ml_service.store")

STATE_FILE = "STATE"  # a random token replaced whenever any tenant's CURRENT changes
STATUS_FILE = "status.json"  # the tenants of the last runs and their state
Where = Union[Path, str, Backend]  # the store's backend, or (local) its folder


def state_token(root: Where) -> str:
    """Changes whenever a tenant's current pointer changes (one small read): servers poll it to hot-swap.

    "" when STATE is missing or not ASCII; OSError when it cannot be read (servers keep what they serve, log once).
    """
    try:
        return as_backend(root).read(STATE_FILE).decode("ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):  # no publish yet, or garbage: servers re-check every pointer
        return ""
    # Any other OSError (a folder in its place, no permission, an I/O error) is raised: servers keep what they
    # serve and log it once (serving.Recommender.refresh), rather than polling a broken store silently.


def touch_state(root: Where) -> None:
    """Give STATE a new random token so every server reloads the tenants whose pointer changed."""
    as_backend(root).write(STATE_FILE, (secrets.token_hex(16) + "\n").encode("ascii"))


def read_document(root: Where) -> dict[str, Any]:
    """The whole status.json ({} when absent; {} with a warning when unreadable)."""
    backend = as_backend(root)
    path = backend.where(STATUS_FILE)
    try:
        document = json.loads(backend.read(STATUS_FILE).decode("utf-8"))
        if not isinstance(document, dict) or not isinstance(document["tenants"], dict):
            raise ValueError("'tenants' is not an object")
        return document
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if not backend.is_local:
            raise  # an unreachable object store: the caller keeps the status it has
        log.warning("%s cannot be read (%s); no training status is shown", path, exc)
        return {}
    except (ValueError, KeyError, TypeError) as exc:  # ValueError includes UnicodeDecodeError
        log.warning("%s cannot be read (%s); no training status is shown", path, exc)
        return {}


def read_status(root: Where) -> dict[str, dict]:
    """The per-tenant states saved last ({} when none or unreadable)."""
    tenants = read_document(root).get("tenants") or {}
    return {str(k): dict(v) for k, v in tenants.items() if isinstance(v, dict)}


def read_absent_runs(root: Where) -> dict[str, int]:
    """Per tenant, how many consecutive full runs did not find it in tenants.csv."""
    absent = read_document(root).get("absent_runs") or {}
    if not isinstance(absent, dict):
        return {}
    return {str(k): int(v) for k, v in absent.items() if isinstance(v, int) and not isinstance(v, bool)}


def write_status(
    root: Where,
    statuses: Mapping[str, Mapping[str, Any]],
    *,
    merge: bool = False,
    absent_runs: Mapping[str, int] | None = None,
    forget: tuple[str, ...] = (),
) -> None:
    """Save tenants' states atomically: replace all of them, or (`merge`) only those given, keeping the others.

    `absent_runs` replaces the absence counters when given (else they are kept); `forget` drops tenants entirely.
    """
    backend = as_backend(root)
    old = read_document(backend)
    tenants: dict[str, Any] = dict(old.get("tenants") or {}) if merge else {}
    tenants.update({str(k): dict(v) for k, v in statuses.items()})
    absent = dict(absent_runs) if absent_runs is not None else dict(old.get("absent_runs") or {})
    for tenant in forget:
        tenants.pop(tenant, None)
        absent.pop(tenant, None)
    document: dict[str, Any] = {"format_version": FORMAT_VERSION, "written_at": utc_now_iso(), "tenants": tenants}
    if absent:
        document["absent_runs"] = absent
    backend.write(STATUS_FILE, json_bytes(document))
