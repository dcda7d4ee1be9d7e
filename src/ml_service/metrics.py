"""Prometheus metrics: live request/hot-swap counters (multiprocess-safe) and scrape-time model and training gauges."""

from __future__ import annotations

import hmac
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ml_service.api.auth_middleware import ASGIApp, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
# Latency buckets (seconds) for a service whose hot routes answer in well under a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TRAINING_LOG_TAIL_BYTES = 4 << 20  # the training log is read from its end; older runs only feed the counters

LIVE = CollectorRegistry(auto_describe=True)  # the in-process metrics (single-process mode)
REQUEST_SECONDS = Histogram(
    "ml_service_http_request_duration_seconds", "Time to answer an HTTP request, by route and status class",
    ["route", "status_class"], buckets=BUCKETS, registry=LIVE,
)
# ml_service_http_requests_total is derived from this histogram's _count at scrape time (_WithRequestCounter): one
# write per request instead of two (in multiprocess mode each write is an mmap update under a lock, ~4 µs).
HOT_SWAPS = Counter("ml_service_model_hot_swaps", "Model versions swapped into serving (per worker process)", ["tenant"], registry=LIVE)
LOAD_FAILURES = Counter("ml_service_model_load_failures", "Model versions that failed to load (per worker process)", ["tenant"], registry=LIVE)
PROBE_UP = Gauge(
    "ml_service_totara_probe_up", "1 when the last Totara probe of /health-check succeeded, 0 when it failed",
    registry=LIVE, multiprocess_mode="mostrecent",
)
WORKER_UP = Gauge("ml_service_worker_up", "1 per live server worker process", registry=LIVE, multiprocess_mode="liveall")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess(directory: Path) -> None:
    """Set up multiprocess mode for worker processes started after this call (before prometheus_client is used)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # counters of a previous service run must not be added to this one's
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def route_label(path: str, known: frozenset[str]) -> str:
    """A bounded route label: the path when it is a known route, `/admin` for the dashboard, `other` otherwise."""
    if path in known:
        return path
    if path.startswith("/admin"):
        return "/admin"
    if path.startswith("/docs"):
        return "/docs"
    return "other"


class MetricsMiddleware:
    """Times every HTTP request and counts it by route and status class (2xx, 4xx...), no per-user labels."""

    def __init__(self, app: ASGIApp, known_paths: Iterable[str]) -> None:
        self.app = app
        self.known = frozenset(known_paths)
        self._children: dict[tuple[str, str], Any] = {}

    def _child(self, route: str, status_class: str) -> Any:
        child = self._children.get((route, status_class))
        if child is None:
            child = self._children[(route, status_class)] = REQUEST_SECONDS.labels(route, status_class)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: dict) -> None:  # type: ignore[type-arg]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._child(route_label(scope["path"], self.known), f"{status // 100}xx").observe(time.perf_counter() - started)


def instrument_recommender(recommender: Any) -> None:
    """Count hot swaps and load failures of a serving.Recommender by comparing its state around each refresh()."""
    original: Callable[[], bool] = recommender.refresh

    def refresh() -> bool:
        before = dict(recommender.state.indexes)
        failed_before = dict(getattr(recommender, "_failed_versions", {}))
        try:
            return original()
        finally:
            for tenant, index in recommender.state.indexes.items():
                if index is not before.get(tenant):
                    HOT_SWAPS.labels(tenant).inc()
            for tenant, version in getattr(recommender, "_failed_versions", {}).items():
                if failed_before.get(tenant) != version:
                    LOAD_FAILURES.labels(tenant).inc()

    recommender.refresh = refresh  # the poller calls self.refresh(), which finds this instance attribute


class ModelCollector(Collector):
    """Per-tenant gauges of the served models, read at scrape time from the serving state (same in every worker)."""

    def __init__(self, recommender: Any, clock: Callable[[], float] = time.time) -> None:
        self.recommender = recommender
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        from ml_service.api.health import service_details

        tenants = service_details(self.recommender, None, self.clock())["tenants"]
        age = GaugeMetricFamily("ml_service_model_age_seconds", "Seconds since the served model was trained", labels=["tenant"])
        info = InfoMetricFamily("ml_service_model", "The served model's version and algorithm", labels=["tenant"])
        quality = GaugeMetricFamily(
            "ml_service_model_heldout_metric", "Held-out quality of the served model (ndcg@10, recall@10, coverage@10)",
            labels=["tenant", "metric"],
        )
        sizes = GaugeMetricFamily("ml_service_model_data_size", "Users, items and interactions the served model was trained on",
                                  labels=["tenant", "kind"])
        model_bytes = GaugeMetricFamily("ml_service_model_size_bytes", "Bytes of the served model's files", labels=["tenant"])
        for tenant, entry in sorted(tenants.items()):
            if "version" not in entry:
                continue
            if entry.get("age_seconds") is not None:
                age.add_metric([tenant], float(entry["age_seconds"]))
            info.add_metric([tenant], {"version": str(entry["version"]), "algorithm": str(entry["algorithm"])})
            metrics = entry.get("metrics") or {}
            for name in ("ndcg@10", "recall@10", "coverage@10"):
                value = metrics.get(name)
                if isinstance(value, (int, float)):
                    quality.add_metric([tenant, name], float(value))
            index = self.recommender.state.indexes.get(tenant)
            model_sizes = ((index.meta.get("info") or {}).get("sizes") or {}) if index is not None else {}
            counts = {"users": entry.get("users"), "items": entry.get("items"), "interactions": model_sizes.get("interactions")}
            for kind, value in counts.items():
                if isinstance(value, (int, float)):
                    sizes.add_metric([tenant, kind], float(value))
            model_bytes.add_metric([tenant], float(entry.get("size_bytes") or 0))
        yield from (age, info, quality, sizes, model_bytes)


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


class _Live(Collector):
    def collect(self) -> Iterator[Metric]:
        return iter(LIVE.collect())


class _WithRequestCounter(Collector):
    """The live metrics plus `ml_service_http_requests_total`, the request histogram's counts as a counter family."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            yield family
            if family.name == REQUEST_SECONDS._name:
                counter = CounterMetricFamily("ml_service_http_requests", "HTTP requests answered, by route and status class",
                                              labels=["route", "status_class"])
                for sample in family.samples:
                    if sample.name.endswith("_count"):
                        counter.add_metric([sample.labels["route"], sample.labels["status_class"]], sample.value)
                yield counter


def exposition_registry(recommender: Any, training_log: Path) -> CollectorRegistry:
    """What /metrics shows: every worker's live metrics (multiprocess mode) or this process's, plus the gauges."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        registry.register(_WithRequestCounter(MultiProcessCollector(None, path=directory)))
    else:
        registry.register(_WithRequestCounter(_Live()))
    registry.register(ModelCollector(recommender))
    registry.register(TrainingCollector(training_log))
    return registry


class MetricsEndpoint:
    """The /metrics ASGI endpoint: the exposition, behind `Authorization: Bearer <ML_METRICS_TOKEN>` when set."""

    def __init__(self, registry: CollectorRegistry, token: str = "") -> None:
        self.registry = registry
        self._token = token.encode()

    def allowed(self, scope: Scope) -> bool:
        if not self._token:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.allowed(scope):
            body = b"Unauthorized: /metrics needs the header Authorization: Bearer <ML_METRICS_TOKEN>\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"www-authenticate", b'Bearer realm="metrics"')]
            await _send(send, 401, headers, body)
            return
        forget_dead_workers()
        body = generate_latest(self.registry)
        await _send(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)


def forget_dead_workers() -> None:
    """Drop the live-gauge files of worker processes that are gone (a restarted worker gets a new pid)."""
    directory = multiprocess_dir()
    if not directory:
        return
    from prometheus_client.multiprocess import mark_process_dead

    from ml_service.processes import pid_alive

    for path in Path(directory).glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            mark_process_dead(int(pid_text), directory)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = headers + [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
