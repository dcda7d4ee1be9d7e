"""Anytime's second version of a run: the first `auto` candidate that beats `popular`, published while the search goes on."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ml_service.config import Settings
from ml_service.data.tenant import TenantData
from ml_service.models.base import TrainedModel
from ml_service.training.anytime import METRIC, may_replace
from ml_service.training.logs import SummaryRow, append_jsonl, append_summary
from ml_service.training.context import TrainContext
from ml_service.training.prepared import finish_model

if TYPE_CHECKING:
    from ml_service.training.result import Reporter

log = logging.getLogger("ml_service.training")

INTERIM_EVENT = "interim"  # the reporter event train_tenant sends with the refitted model
INTERIM_SUMMARY_PREFIX = "interim:"  # train_summary.log's ALGORITHM of an interim row

def publishing_reporter(report: "Reporter", settings: Settings, store: Any, data: TenantData, data_fingerprint: str,
                        run_stamp: str) -> "Reporter":
    """`report`, except that an INTERIM_EVENT publishes its model (when it may replace what is served)."""

    def reporter(event: str, details: dict[str, Any]) -> None:
        if event != INTERIM_EVENT:
            report(event, details)
            return
        record = publish_interim(settings, store, data, details["model"], data_fingerprint, run_stamp)
        report("interim-done", {"tenant": data.tenant, "record": record})

    return reporter


def publish_interim(settings: Settings, store: Any, data: TenantData, model: TrainedModel, data_fingerprint: str,
                    run_stamp: str) -> dict[str, Any]:
    """Finish and publish an interim model unless the served one validates better; log it; return the log record."""
    record: dict[str, Any] = {"event": "tenant-interim", "stage": "interim", "tenant": data.tenant,
                              "algorithm": model.algorithm, "published": False, "version": None}
    try:
        started = time.monotonic()
        finish_model(model, TrainContext.of(data, settings), started, stage="interim")
        model.info["data_fingerprint"] = data_fingerprint
        score = float(model.metrics.get(METRIC, 0.0))
        allowed, reason, existing = may_replace(store, data.tenant, score, settings.validation_protocol)
        theirs = existing.get(METRIC)
        if allowed and existing.get("algorithm") == "popular":  # may_replace's words are for another popular model
            reason = f"beats the served popular model ({score:.4f} > {theirs or 0.0:.4f})"
        elif allowed and isinstance(theirs, (int, float)) and score <= theirs:
            # e.g. the quick pass already serves this very model: another version would change nothing
            allowed, reason = False, f"validates no better than the served {existing.get('algorithm')} model ({score:.4f} <= {theirs:.4f})"
        record.update(metrics={METRIC: score}, reason=reason, existing=existing)
        if allowed:
            record.update(published=True, version=store.publish(data.tenant, model))
            record["seconds"] = {"publish": round(time.monotonic() - started, 3)}
    except Exception as exc:  # a bonus, like the quick model: its failure must not cost the tenant its final model
        log.exception("interim model of tenant %s failed", data.tenant)
        record["reason"] = f"failed: {type(exc).__name__}: {exc}"
    record["at"] = time.time()
    try:
        append_jsonl(settings.training_jsonl, record)
        if record["published"]:
            score_text = f"{record['metrics'][METRIC]:.4f}"
            append_summary(settings.train_summary_log, [SummaryRow(
                run_stamp, INTERIM_SUMMARY_PREFIX + model.algorithm, data.tenant, "success", score=score_text)])
    except OSError as exc:  # a full disk must not end the run
        log.error("cannot write the interim model's log records: %s", exc)
    return record
