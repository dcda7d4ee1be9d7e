"""`ml-service models list | show | rollback | pin | unpin | prune`: the store's contents as tables and JSON."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

from ml_service.store import BadPointerError, ModelStore, StoreError
from ml_service.store.format import json_default

ACTIONS = ("list", "show", "rollback", "pin", "unpin", "prune")


def models_command(
    store: ModelStore, action: str, tenant: str | None, version: str | None, out: TextIO, err: TextIO | None = None
) -> int:
    """Run one `models` action; 0 on success, 1 with `error: ...` on stderr when the store refuses."""
    err = err if err is not None else sys.stderr
    try:
        if action == "list":
            if tenant is None:
                _print_tenants(store, out)
            else:
                _print_versions(store, tenant, out)
        elif action == "show":
            _show(store, _need_tenant(action, tenant), version, out, err)
        elif action == "rollback":
            tenant = _need_tenant(action, tenant, " [VERSION]")
            before = _current_for_display(store, tenant, err)
            after = store.rollback(tenant, version)
            out.write(f"tenant {tenant}: current version is now {after} (was {before or 'none'})\n")
        elif action == "pin":
            tenant = _need_tenant(action, tenant, " [VERSION]")
            before = _current_for_display(store, tenant, err)
            pinned = store.pin(tenant, version)
            out.write(
                f"tenant {tenant}: pinned to version {pinned} (was serving {before or 'none'}); new trainings are "
                f"stored but not served until `ml-service models unpin {tenant}`\n"
            )
        elif action == "unpin":
            tenant = _need_tenant(action, tenant)
            old = store.unpin(tenant)
            current = store.current_version(tenant)
            newest = next((i.version for i in store.versions(tenant) if i.ok), None)
            if old is None:
                out.write(f"tenant {tenant} was not pinned\n")
            else:
                hint = (
                    f"; the newest stored version is {newest}: `ml-service models rollback {tenant} {newest}` serves it now"
                    if newest and newest != current else ""
                )
                out.write(f"tenant {tenant}: unpinned; still serving {current or 'none'} until the next published version{hint}\n")
        elif action == "prune":
            removed = store.prune(tenant)
            for path in removed:
                out.write(f"removed {path}\n")
            out.write(f"{len(removed)} folder(s) removed; keeping the {store.keep_versions} newest versions and the current one\n")
        else:
            raise StoreError(f"unknown models action {action!r}: use {', '.join(ACTIONS[:-1])} or {ACTIONS[-1]}")
    except StoreError as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0


def _current_for_display(store: ModelStore, tenant: str, err: TextIO) -> str | None:
    """The current version for a before/after line; a garbage CURRENT is what rollback and pin repair, so it is
    reported, not fatal."""
    try:
        return store.current_version(tenant)
    except BadPointerError as exc:
        print(f"note: {exc}", file=err)
        return "an unreadable CURRENT"


def _need_tenant(action: str, tenant: str | None, more: str = "") -> str:
    if tenant is None:
        raise StoreError(f"`models {action}` needs a tenant id, e.g. `ml-service models {action} 0{more}`")
    return tenant


def _show(store: ModelStore, tenant: str, version: str | None, out: TextIO, err: TextIO) -> None:
    loaded = store.load(tenant, version, verify_hashes=True)
    current = store.current_version(tenant)
    if version is None and loaded.version != current:
        print("note: the current version is corrupt; showing the version served instead", file=err)
    document = {
        "tenant": tenant,
        "version": loaded.version,
        "is_current": loaded.version == current,
        "pinned": store.pinned_version(tenant),
        "meta": loaded.meta,
    }
    out.write(json.dumps(document, indent=2, sort_keys=True, default=json_default) + "\n")


def _print_tenants(store: ModelStore, out: TextIO) -> None:
    rows = [("TENANT", "CURRENT VERSION", "ALGORITHM", "CREATED", "NDCG@10", "SIZE", "VERSIONS", "STATE")]
    status = store.read_status()
    for tenant in store.tenants():
        infos = store.versions(tenant)
        current = next((i for i in infos if i.is_current), None)
        state = status.get(tenant, {}).get("state", "")
        if current is None:
            rows.append((tenant, "-", "-", "-", "-", "-", str(len(infos)), state))
            continue
        rows.append(
            (
                tenant,
                current.version + ("" if current.ok else " (CORRUPT)") + (" (pinned)" if current.is_pinned else ""),
                current.algorithm,
                current.created_at,
                _format_metric(_ndcg10(current.metrics)),
                _format_size(current.size_bytes),
                str(len(infos)),
                state,
            )
        )
    if len(rows) == 1:
        out.write(f"no models in {store.root}\n")
        return
    _print_table(rows, out)


def _print_versions(store: ModelStore, tenant: str, out: TextIO) -> None:
    infos = store.versions(tenant)
    if not infos:
        out.write(f"tenant {tenant} has no model versions in {store.root}\n")
        return
    rows = [("", "VERSION", "ALGORITHM", "CREATED", "NDCG@10", "SIZE", "CHECK")]
    for info in infos:
        rows.append(
            (
                "*" if info.is_current else "",
                info.version + (" (pinned)" if info.is_pinned else ""),
                info.algorithm,
                info.created_at,
                _format_metric(_ndcg10(info.metrics)),
                _format_size(info.size_bytes),
                "ok" if info.ok else f"CORRUPT: {info.error}",
            )
        )
    _print_table(rows, out)


def _print_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")


def _ndcg10(metrics: dict[str, Any]) -> Any:
    for key, value in metrics.items():
        if re.sub(r"[^a-z0-9]", "", str(key).lower()) in ("ndcg10", "ndcgat10", "valndcg10", "validationndcg10"):
            return value
    return None


def _format_metric(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4f}"
    return "-"


def _format_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"
