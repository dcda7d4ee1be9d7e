"""The end-of-run table that `ml-service train` and the demo print."""

from __future__ import annotations

from typing import Any


def format_summary(results: list[Any]) -> str:
    """The end-of-run table: tenant, users, items, interactions, algorithm, parameters, NDCG@10, seconds."""
    header = ("tenant", "state", "users", "items", "interactions", "algorithm", "parameters", "NDCG@10", "seconds")
    rows = [header]
    for r in results:
        model = r.model
        params = ", ".join(f"{k}={v}" for k, v in sorted((model.params if model else {}).items()) if not isinstance(v, (dict, list)))
        ndcg = (model.metrics or {}).get("ndcg@10") if model else None
        seconds = sum(v for v in r.seconds.values() if isinstance(v, (int, float)))
        rows.append((
            r.tenant, r.state, str(r.sizes.get("users", "")), str(r.sizes.get("items", "")),
            str(r.sizes.get("interactions", "")), r.algorithm, params[:60],
            "" if ndcg is None else f"{ndcg:.4f}", f"{seconds:.1f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    failures = [f"tenant {r.tenant}: {r.msg}" for r in results if r.state == "failed"]
    return "\n".join(lines + ([""] + failures if failures else []))
