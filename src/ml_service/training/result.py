"""What training one tenant, and one run over all tenants, produced: the results the pipeline logs and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ml_service.models.base import TrainedModel
from ml_service.training.logs import SummaryRow, join_list

SMALL_TENANT_MSG = (
    "The number of users or items is too small to train a model for tenant {tenant}: "
    "it is served its most popular items of each type"
)
Reporter = Callable[[str, dict[str, Any]], None]  # (event, details): "tenant-start", "stage", "tenant-done"


@dataclass
class TenantResult:
    """What training one tenant produced: a model to publish (or None) and what to log."""

    tenant: str
    state: str  # "trained" | "fallback" (too little data: popular model) | "failed" (previous model kept)
    msg: str  # "success", the reference's skip message, or what went wrong
    algorithm: str
    model: TrainedModel | None = None
    version: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary_row(self, timestamp: str) -> SummaryRow:
        search = (self.model.info.get("search") if self.model else None) or {}
        ok = self.state == "trained"
        return SummaryRow(
            timestamp=timestamp,
            algorithm=self.algorithm,
            tenant=self.tenant,
            msg=self.msg,
            epochs=join_list(search.get("epochs", [])) if ok else "",
            n_embeddings=join_list(search.get("components", [])) if ok else "",
            score=join_list(f"{s:.4f}" for s in search.get("scores", [])) if ok else "",
        )

    def as_record(self) -> dict[str, Any]:
        model = self.model
        return {
            "tenant": self.tenant,
            "state": self.state,
            "msg": self.msg,
            "algorithm": self.algorithm,
            "version": self.version,
            "sizes": self.sizes,
            "seconds": self.seconds,
            "params": model.params if model else {},
            "metrics": model.metrics if model else {},
            "auto": model.info.get("auto") if model else None,
            "load_report": model.info.get("load_report") if model else None,
        }


@dataclass
class RunResult:
    """One training run over all tenants of a snapshot."""

    ok: bool  # False when nothing could be fetched or any tenant failed
    tenants: list[TenantResult]
    error: str = ""
    seconds: float = 0.0
