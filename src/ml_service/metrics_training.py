"""Training metrics for /metrics, read at scrape time from training.jsonl (which the training process writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

TRAINING_LOG_TAIL_BYTES = 4 << 20  # the training log is read from its end; older runs only feed the counters


class TrainingCollector(Collector):
    """Training metrics read at scrape time from training.jsonl, which the training child process writes."""

    def __init__(self, training_log: Path) -> None:
        self.path = Path(training_log)
        self._cache: tuple[tuple[int, float], list[dict[str, Any]]] | None = None

    def records(self) -> list[dict[str, Any]]:
        """The training log's records (cached until the file changes); unreadable lines are skipped."""
        try:
            stat = self.path.stat()
        except OSError:
            return []
        key = (stat.st_size, stat.st_mtime)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        records = read_training_log(self.path)
        self._cache = (key, records)
        return records

    def collect(self) -> Iterator[Metric]:
        records = self.records()
        runs = CounterMetricFamily("ml_service_training_runs", "Training runs by outcome (ok, failed)", labels=["outcome"])
        tenant_runs = CounterMetricFamily("ml_service_training_tenant_runs", "Tenant trainings by outcome (trained, fallback, failed)",
                                          labels=["outcome"])
        downloads = CounterMetricFamily("ml_service_download_runs", "Export downloads (one per training run) by outcome", labels=["outcome"])
        download_bytes = CounterMetricFamily("ml_service_download_bytes", "Bytes of export files downloaded")
        download_seconds = CounterMetricFamily("ml_service_download_seconds", "Seconds spent downloading exports")
        attempts = CounterMetricFamily("ml_service_download_attempts", "HTTP requests for export files by outcome: the HTTP status "
                                       "(200, 202, 404...) or, when no whole answer arrived, the error kind (read_timeout...)",
                                       labels=["status"])
        run_stage = GaugeMetricFamily("ml_service_training_run_stage_seconds", "Seconds of each stage in the last training run "
                                      "(download once, the others added up over its tenants)", labels=["stage"])
        stage = GaugeMetricFamily("ml_service_training_stage_seconds", "Seconds of each stage of the tenant's last training",
                                  labels=["tenant", "stage"])
        cand_seconds = GaugeMetricFamily("ml_service_training_auto_candidate_seconds", "Seconds auto spent tuning each candidate (last run)",
                                         labels=["tenant", "candidate"])
        cand_score = GaugeMetricFamily("ml_service_training_auto_candidate_score", "Validation NDCG@10 of each auto candidate (last run)",
                                       labels=["tenant", "candidate"])
        dropped = GaugeMetricFamily("ml_service_training_rows_dropped", "Rows dropped by defect class in the tenant's last load",
                                    labels=["tenant", "defect"])
        last_success = GaugeMetricFamily("ml_service_training_last_success_timestamp_seconds",
                                         "Unix time of the tenant's last successful training", labels=["tenant"])
        run_counts: dict[str, int] = {}
        tenant_counts: dict[str, int] = {}
        download_counts: dict[str, int] = {}
        attempt_counts: dict[str, int] = {}
        last_run_stages: dict[str, float] = {}
        pending_stages: dict[str, float] = {}
        total_bytes = total_seconds = 0.0
        last: dict[str, dict[str, Any]] = {}
        successes: dict[str, float] = {}
        for record in records:
            if record.get("event") == "run":
                outcome = "ok" if record.get("ok") else "failed"
                run_counts[outcome] = run_counts.get(outcome, 0) + 1
                download = record.get("download")
                if isinstance(download, dict):
                    key = "ok" if download.get("ok") else "failed"
                    download_counts[key] = download_counts.get(key, 0) + 1
                    total_bytes += float(download.get("bytes") or 0)
                    total_seconds += float(download.get("seconds") or 0)
                    for status, n in (download.get("attempts") or {}).items():
                        if isinstance(n, (int, float)):
                            attempt_counts[str(status)] = attempt_counts.get(str(status), 0) + int(n)
                last_run_stages = {"download": float(download.get("seconds") or 0) if isinstance(download, dict) else 0.0,
                                   **pending_stages}
                pending_stages = {}
            elif record.get("event") == "tenant" and isinstance(record.get("tenant"), str):
                tenant = record["tenant"]
                state = str(record.get("state") or "unknown")
                tenant_counts[state] = tenant_counts.get(state, 0) + 1
                last[tenant] = record
                for name, seconds in stage_seconds(record.get("seconds") or {}).items():
                    pending_stages[name] = pending_stages.get(name, 0.0) + seconds
                if state in ("trained", "fallback"):
                    successes[tenant] = float(record.get("at") or 0)
        for outcome, n in sorted(run_counts.items()):
            runs.add_metric([outcome], n)
        for outcome, n in sorted(tenant_counts.items()):
            tenant_runs.add_metric([outcome], n)
        for outcome, n in sorted(download_counts.items()):
            downloads.add_metric([outcome], n)
        for status, n in sorted(attempt_counts.items()):
            attempts.add_metric([status], n)
        for name, seconds in last_run_stages.items():
            run_stage.add_metric([name], round(seconds, 6))
        download_bytes.add_metric([], total_bytes)
        download_seconds.add_metric([], total_seconds)
        for tenant, record in sorted(last.items()):
            for name, seconds in stage_seconds(record.get("seconds") or {}).items():
                stage.add_metric([tenant, name], seconds)
            auto = record.get("auto") or {}
            for name, seconds in sorted((auto.get("seconds") or {}).items()):
                cand_seconds.add_metric([tenant, name], float(seconds))
            for name, score in sorted((auto.get("scores") or {}).items()):
                cand_score.add_metric([tenant, name], float(score))
            for defect, count in sorted(defect_counts(record.get("load_report") or {}).items()):
                dropped.add_metric([tenant, defect], float(count))
        for tenant, at in sorted(successes.items()):
            last_success.add_metric([tenant], at)
        yield from (runs, tenant_runs, downloads, download_bytes, download_seconds, attempts, stage, run_stage, cand_seconds, cand_score,
                    dropped, last_success)


STAGES = ("parse", "features", "fit", "evaluate", "publish")  # a tenant's training, in order (training/progress.StageClock)
LEGACY_STAGES = {"load": "parse", "train": "fit", "publish": "publish"}  # records written before the finer split


def stage_seconds(seconds: dict[str, Any]) -> dict[str, float]:
    """A tenant record's seconds per stage of STAGES, in order; older records' load/train/publish mapped onto them."""
    numbers = {k: float(v) for k, v in seconds.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if "parse" not in numbers and "load" in numbers:  # parsed in anytime's quick pass, before this training's clock
        numbers["parse"] = numbers["load"]
    if any(name in numbers for name in STAGES[:-1]):
        return {name: numbers[name] for name in STAGES if name in numbers}
    mapped = {LEGACY_STAGES[k]: v for k, v in numbers.items() if k in LEGACY_STAGES}
    return {name: mapped[name] for name in STAGES if name in mapped}


def defect_counts(load_report: dict[str, Any]) -> dict[str, int]:
    """Rows dropped per defect class from a LoadReport.as_dict()."""
    counts = {
        "skipped_row": load_report.get("skipped_rows"),
        "unknown_user": load_report.get("dropped_unknown_user"),
        "unknown_item": load_report.get("dropped_unknown_item"),
        "duplicate": load_report.get("duplicates_collapsed"),
    }
    return {name: int(value) for name, value in counts.items() if isinstance(value, (int, float))}


def read_training_log(path: Path, tail_bytes: int = TRAINING_LOG_TAIL_BYTES) -> list[dict[str, Any]]:
    """Records of training.jsonl, oldest first (its last `tail_bytes` only); bad lines are skipped."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first line is probably cut
    records = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
