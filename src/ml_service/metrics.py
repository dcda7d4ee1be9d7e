"""Prometheus metrics: live request/hot-swap counters (multiprocess-safe) and scrape-time model and training gauges."""

from __future__ import annotations

import asyncio
import atexit
import hmac
import os
import time
import weakref
from bisect import bisect_left
from pathlib import Path
from time import perf_counter
from typing import Any, Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ml_service.api.auth_middleware import ASGIApp, Receive, Scope, Send
from ml_service.metrics_training import TrainingCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
# Latency buckets (seconds) for a service whose hot routes answer in well under a millisecond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

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


FLUSH_AFTER_S = 0.25  # a worker's request counts reach the shared metric files at most this long after the request
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class _Tally:
    """One (route, status class)'s requests not yet written to the histogram: counts per bucket and the seconds."""

    __slots__ = ("child", "counts", "seconds", "pending")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.seconds = 0.0
        self.pending = False

    def flush(self) -> None:
        self.pending = False
        seconds, self.seconds = self.seconds, 0.0
        counts, self.counts = self.counts, [0] * len(self.counts)
        if not any(counts):
            return
        self.child._sum.inc(seconds)
        for i, n in enumerate(counts):
            if n:
                self.child._buckets[i].inc(n)


class RequestTallies:
    """Request durations by route and status class (2xx, 4xx...), no per-user labels, tallied in process.

    A request only adds to in-process tallies (a bisect and three additions, no allocation); the tallies go to
    the prometheus_client histogram, whose multiprocess mode writes a memory-mapped file under a lock per value,
    at most FLUSH_AFTER_S later on the event loop, and before this worker answers /metrics. Writing per request
    cost ~12 µs in multiprocess mode (benchmarks/serving.py --metrics both). The service records from the access
    log's middleware (api/middleware.py), which already times every request: one send wrapper for both.
    """

    def __init__(self, known_paths: Iterable[str]) -> None:
        self.known = frozenset(known_paths)
        routes = set(self.known) | {"/admin", "/docs", "other"}
        # Every label pair's tally exists from the start: no lookup misses, no label resolution on the hot path.
        self._tallies: dict[str, dict[int, _Tally]] = {
            route: {code: _Tally(REQUEST_SECONDS.labels(route, cls)) for code, cls in enumerate(STATUS_CLASSES, start=1)}
            for route in routes
        }
        self._route_of: dict[str, dict[int, _Tally]] = {}  # request path -> its route's tallies (bounded: known paths only)
        self._other = self._tallies["other"]
        self._dirty: list[_Tally] = []
        self._flush_pending = False
        _LIVE_TALLIES.add(self)

    def _tallies_of(self, path: str) -> dict[int, _Tally]:
        found = self._route_of.get(path)
        if found is None:
            found = self._tallies.get(route_label(path, self.known), self._other)
            if path in self.known:
                self._route_of[path] = found
        return found

    def flush(self) -> None:
        """Write the tallies into the histogram (the shared files in multiprocess mode)."""
        self._flush_pending = False
        dirty, self._dirty = self._dirty, []
        for tally in dirty:
            tally.flush()

    def record(self, path: str, status: int, elapsed: float) -> None:
        """One request of `elapsed` seconds answered with `status` (on the event loop's thread)."""
        tallies = self._route_of.get(path) or self._tallies_of(path)
        tally = tallies[status // 100] if 100 <= status < 600 else tallies[5]
        if not tally.pending:
            tally.pending = True
            self._dirty.append(tally)
        tally.counts[bisect_left(BUCKETS, elapsed)] += 1
        tally.seconds += elapsed
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)


class MetricsMiddleware(RequestTallies):
    """RequestTallies as a middleware of its own, for an app without the access log's (tests, benchmarks)."""

    def __init__(self, app: ASGIApp, known_paths: Iterable[str]) -> None:
        super().__init__(known_paths)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        def send_and_note(message: dict) -> Awaitable[None]:  # type: ignore[type-arg]
            # Not a coroutine: the caller awaits `send`'s own, which saves a coroutine per message (~1 µs).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.record(scope["path"], status, perf_counter() - started)


_LIVE_TALLIES: "weakref.WeakSet[RequestTallies]" = weakref.WeakSet()


def flush_request_metrics() -> None:
    """Write this process's pending request tallies (before an exposition, at exit)."""
    for tallies in list(_LIVE_TALLIES):
        tallies.flush()


atexit.register(flush_request_metrics)


def instrument_recommender(recommender: Any) -> None:
    """Count hot swaps (comparing the served indexes around each refresh()) and failed model loads (each version
    marked bad and each transient failure the recommender's LoadFailures records) of a serving.Recommender."""
    original: Callable[[], bool] = recommender.refresh

    def refresh() -> bool:
        before = dict(recommender.state.indexes)
        try:
            return original()
        finally:
            for tenant, index in recommender.state.indexes.items():
                if index is not before.get(tenant):
                    HOT_SWAPS.labels(tenant).inc()

    recommender.refresh = refresh  # the poller calls self.refresh(), which finds this instance attribute
    failures = getattr(recommender, "_failures", None)
    for name in ("mark_bad", "transient"):
        if failures is None or not hasattr(failures, name):
            continue

        def counted(tenant: str, *args: Any, _original: Callable[..., Any] = getattr(failures, name), **kwargs: Any) -> Any:
            if tenant != "*":  # "*": a store-wide problem (serving._STORE), no tenant's model
                LOAD_FAILURES.labels(tenant).inc()
            return _original(tenant, *args, **kwargs)

        setattr(failures, name, counted)


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
        flush_request_metrics()  # this worker's last requests; the others' reach the files within FLUSH_AFTER_S
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
