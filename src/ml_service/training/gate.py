"""Whether a run's final model may replace what a tenant serves: never a model that validated better before."""

from __future__ import annotations

from typing import Any


METRIC = "ndcg@10"
PROVISIONAL_STAGES = ("quick", "interim")  # anytime's early versions: always superseded by the run's final model


def final_may_replace(store: Any, tenant: str, score: float | None, protocol: str) -> tuple[bool, str, dict[str, Any]]:
    """(publish?, why, the served version) for a final model validating at `score` under `protocol`.

    Published when nothing (or a damaged version) is served, when the served version is a quick or interim
    model (this run's or an earlier one's), when the served version cannot be compared (no stored score,
    another validation protocol), when the tenant is pinned (the store keeps the pin; the version is kept for
    a later unpin), or when `score` is at least the served version's validation NDCG@10. Otherwise the served
    model keeps serving and the final one is not stored.
    """
    try:
        if store.pinned_version(tenant) is not None:
            return True, "pinned: stored, the pinned version keeps serving", {}
        current_name = store.current_version(tenant)
    except Exception as exc:  # unreadable pointers: publishing repairs CURRENT, the store decides about PINNED
        return True, f"the served version cannot be read ({exc})", {}
    if current_name is None:
        return True, "no model served yet", {}
    current = next((v for v in store.versions(tenant) if v.version == current_name), None)
    if current is None or not current.ok:
        return True, "the served version is damaged or missing", {"version": current_name}
    existing = {"version": current.version, "algorithm": current.algorithm, METRIC: current.metrics.get(METRIC)}
    info = _info(store, tenant, current.version)
    stage = info.get("stage")
    if stage in PROVISIONAL_STAGES:
        return True, f"the served version is a {stage} model", existing
    theirs = current.metrics.get(METRIC)
    if score is None or not isinstance(theirs, (int, float)):
        return True, "no validation score to compare", existing
    their_protocol = info.get("validation_protocol")
    if isinstance(their_protocol, str) and their_protocol != protocol:
        return True, f"the served model was validated with another protocol ({their_protocol})", existing
    if score >= theirs:
        return True, f"validates at least as well ({score:.4f} >= {theirs:.4f})", existing
    return False, f"the served {current.algorithm} model validates better ({theirs:.4f} > {score:.4f}): it keeps serving", existing


def _info(store: Any, tenant: str, version: str) -> dict[str, Any]:
    try:
        info = store.read_meta(tenant, version).get("info") or {}
    except Exception:
        return {}
    return info if isinstance(info, dict) else {}
