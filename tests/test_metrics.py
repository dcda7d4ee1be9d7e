"""/metrics: names, labels and values after a real training run and requests; the bearer token; 2 workers added up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ml_service.auth import signed_headers
from ml_service.config import Settings
from ml_service.demo.run import SAMPLE_DIR
from ml_service.demo.simulator import TotaraSimulator
from ml_service.store import ModelStore
from tests.api.conftest import serve  # noqa: F401 - the fixture
from tests.api.support import closed_port
from tests.test_server import _serve

KEY = "metrics-test-key"
TOKEN = "scraper-secret-9"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition as {(name, sorted labels): value}, parsed by prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def train_sample(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update({"ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"), "ML_NUM_THREADS": "1"})
    return subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--source", str(SAMPLE_DIR), "--algorithm", "popular", *extra],
                          env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    done = train_sample(root)
    assert done.returncode == 0, done.stderr
    return root


def test_metrics_after_a_training_run_and_requests(trained: Path, serve: Callable[..., str]) -> None:  # noqa: F811
    settings = Settings(totara_url=f"http://127.0.0.1:{closed_port()}", totara_key=KEY, models_dir=trained / "models",
                        logs_dir=trained / "logs", metrics_token=TOKEN)
    base = serve(settings, ModelStore(settings.recommender_dir))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = samples(httpx.get(base + "/metrics", headers=auth).text)
    params = {"totara_user_id": "2", "item_type": "engage_article", "tenant": "0", "n_items": "3"}
    for _ in range(7):
        assert httpx.get(base + "/user-items", params=params, headers=signed_headers(KEY)).status_code == 200
    assert httpx.get(base + "/user-items", params=params).status_code == 401  # unsigned: a 4xx
    after = samples(httpx.get(base + "/metrics", headers=auth).text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("ml_service_http_requests_total", route="/user-items", status_class="2xx") == 7
    assert delta("ml_service_http_requests_total", route="/user-items", status_class="4xx") == 1
    assert delta("ml_service_http_request_duration_seconds_count", route="/user-items", status_class="2xx") == 7
    assert delta("ml_service_http_request_duration_seconds_bucket", route="/user-items", status_class="2xx", le="+Inf") == 7
    model = [labels for (name, labels) in after if name == "ml_service_model_info"]
    assert {dict(l)["tenant"] for l in model} == {"0", "1", "2"} and all(dict(l)["algorithm"] == "popular" for l in model)
    assert after[("ml_service_model_data_size", (("kind", "users"), ("tenant", "0")))] > 0
    assert after[("ml_service_model_data_size", (("kind", "interactions"), ("tenant", "0")))] > 0
    assert after[("ml_service_model_size_bytes", (("tenant", "0"),))] > 0
    assert 0 <= after[("ml_service_model_age_seconds", (("tenant", "0"),))] < 3600
    assert ("ml_service_model_heldout_metric", (("metric", "ndcg@10"), ("tenant", "0"))) in after
    assert after[("ml_service_training_runs_total", (("outcome", "ok"),))] == 1
    assert after[("ml_service_training_tenant_runs_total", (("outcome", "trained"),))] == 3
    for stage in ("parse", "fit", "evaluate", "publish"):  # popular builds no features
        assert after[("ml_service_training_stage_seconds", (("stage", stage), ("tenant", "0")))] >= 0
        assert after[("ml_service_training_run_stage_seconds", (("stage", stage),))] >= 0
    assert ("ml_service_training_stage_seconds", (("stage", "load"), ("tenant", "0"))) not in after  # the old coarse names
    assert after[("ml_service_download_runs_total", (("outcome", "ok"),))] == 1
    assert after[("ml_service_download_bytes_total", ())] > 0
    assert ("ml_service_training_rows_dropped", (("defect", "duplicate"), ("tenant", "0"))) in after
    assert ("ml_service_training_last_success_timestamp_seconds", (("tenant", "0"),)) in after
    # Every metric the shipped Grafana dashboard queries exists in the exposition.
    grafana = (Path(__file__).parents[1] / "deploy" / "grafana-dashboard.json").read_text()
    text = httpx.get(base + "/metrics", headers=auth).text
    exposed = {name for name, _ in samples(text)}
    exposed |= {f.name + suffix for f in text_string_to_metric_families(text) for suffix in ("", "_total")}  # declared, maybe empty
    for queried in set(re.findall(r"ml_service_[a-z0-9_]+", grafana)):
        assert queried in exposed, queried


def test_download_attempts_by_status_after_a_run_from_totara(tmp_path: Path) -> None:
    """A run that downloads from (simulated) Totara: its attempts by HTTP status reach /metrics, 202s included."""
    from ml_service.metrics_training import TrainingCollector

    with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
        simulator.not_ready_times = 1  # each file answers 202 once, then 200
        simulator.status_override = {"item_data_2.csv": 404}
        env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
        env.update({"ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"), "ML_NUM_THREADS": "1",
                    "ML_TOTARA_URL": simulator.url, "ML_TOTARA_KEY": KEY, "ML_DOWNLOAD_RETRY_WAIT": "0"})
        done = subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--algorithm", "popular"], env=env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        answered = [status for _, _, status in simulator.requests.snapshot()]
    assert "item_data_2.csv" in done.stdout + done.stderr  # tenant 2 failed to download; the others trained
    registry_text = "\n".join(_exposition(TrainingCollector(tmp_path / "logs" / "training.jsonl")))
    got = samples(registry_text)
    for status in ("200", "202", "404"):
        assert got[("ml_service_download_attempts_total", (("status", status),))] == answered.count(int(status)), status
    assert got[("ml_service_training_run_stage_seconds", (("stage", "download"),))] > 0


def _exposition(collector: object) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return [generate_latest(registry).decode()]


def test_metrics_token_is_required_when_set(trained: Path, serve: Callable[..., str]) -> None:  # noqa: F811
    settings = Settings(totara_url="http://127.0.0.1:1", totara_key=KEY, models_dir=trained / "models", logs_dir=trained / "logs",
                        metrics_token=TOKEN)
    base = serve(settings, ModelStore(settings.recommender_dir))
    assert httpx.get(base + "/metrics").status_code == 401
    assert httpx.get(base + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(base + "/metrics", headers=signed_headers(KEY)).status_code == 401  # Totara's key is not the token
    assert httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_can_be_turned_off(trained: Path, serve: Callable[..., str]) -> None:  # noqa: F811
    settings = Settings(totara_url="http://127.0.0.1:1", totara_key=KEY, models_dir=trained / "models", logs_dir=trained / "logs",
                        metrics_enabled=False)
    base = serve(settings, ModelStore(settings.recommender_dir))
    assert httpx.get(base + "/metrics").status_code == 401  # an ordinary unknown path: Totara's signature first


def test_two_workers_are_added_up(tmp_path: Path) -> None:
    done = train_sample(tmp_path)
    assert done.returncode == 0, done.stderr
    with TotaraSimulator(SAMPLE_DIR, "k", port=0) as simulator:
        for base, _ in _serve(tmp_path, {"ML_TOTARA_URL": simulator.url, "ML_WORKERS": "2", "ML_METRICS_TOKEN": TOKEN,
                                         "ML_RECOMMENDATION_RETRAIN_FREQ": "100000"}):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            params = {"totara_user_id": "2", "item_type": "engage_article", "tenant": "0", "n_items": "3"}
            start = samples(httpx.get(base + "/metrics", headers=headers).text)
            n = 40
            for _ in range(n):  # a new connection each time: the kernel spreads them over both workers
                assert httpx.get(base + "/user-items", params=params, headers=signed_headers("server-test-key")).status_code == 200
            key = ("ml_service_http_requests_total", (("route", "/user-items"), ("status_class", "2xx")))
            deadline = time.monotonic() + 20  # each worker writes its tallies within FLUSH_AFTER_S of its last request
            while time.monotonic() < deadline:
                now = samples(httpx.get(base + "/metrics", headers=headers).text)
                if now.get(key, 0.0) - start.get(key, 0.0) >= n:
                    break
                time.sleep(0.2)
            for _ in range(4):  # whichever worker answers the scrape, it reports both workers' counts
                now = samples(httpx.get(base + "/metrics", headers=headers).text)
                assert now[key] - start.get(key, 0.0) == n
            pids = {dict(labels)["pid"] for (name, labels) in now if name == "ml_service_worker_up"}
            assert len(pids) == 2


def test_request_tallies_reach_the_histogram_in_the_right_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The middleware's batched counts give the histogram exactly what one observe() per request would."""
    import asyncio

    import ml_service.metrics as metrics

    durations = iter([0.0004, 0.0005, 0.003, 7.0, 0.0001])
    clock = [0.0]  # each request starts at 0 and ends at its duration: exact floats on the buckets' bounds

    def fake_perf_counter() -> float:
        return clock[0]

    async def app(scope: dict, receive: object, send: Callable) -> None:  # type: ignore[type-arg]
        clock[0] = next(durations)
        await send({"type": "http.response.start", "status": scope["status"], "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def sink(message: dict) -> None:  # type: ignore[type-arg]
        pass

    def value(name: str, **labels: str) -> float:
        return metrics.LIVE.get_sample_value(name, labels) or 0.0

    route = "/tally-test"
    before = {le: value("ml_service_http_request_duration_seconds_bucket", route=route, status_class="2xx", le=le)
              for le in ("0.0005", "0.005", "+Inf")}
    monkeypatch.setattr(metrics, "perf_counter", fake_perf_counter)
    middleware = metrics.MetricsMiddleware(app, known_paths={route})

    async def run() -> None:
        for status in (200, 200, 200, 200, 404):
            clock[0] = 0.0
            await middleware({"type": "http", "path": route, "status": status}, None, sink)
        # nothing written yet: the tallies wait for the flush
        assert value("ml_service_http_request_duration_seconds_bucket", route=route, status_class="2xx", le="+Inf") == before["+Inf"]
        middleware.flush()

    asyncio.run(run())
    got = {le: value("ml_service_http_request_duration_seconds_bucket", route=route, status_class="2xx", le=le) - before[le]
           for le in before}
    assert got == {"0.0005": 2, "0.005": 3, "+Inf": 4}  # 0.0005 is on the bucket's bound: it belongs to le="0.0005"
    assert value("ml_service_http_request_duration_seconds_count", route=route, status_class="4xx") >= 1


def test_a_dead_workers_live_gauge_is_forgotten(tmp_path: Path) -> None:
    probe = r"""
import os, subprocess, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from ml_service.metrics import WORKER_UP, forget_dead_workers
WORKER_UP.set(1)
child = subprocess.run([sys.executable, "-c", "from ml_service.metrics import WORKER_UP; WORKER_UP.set(1)"], check=True)
registry = CollectorRegistry()
MultiProcessCollector(registry)
before = generate_latest(registry).decode().count("ml_service_worker_up{")
forget_dead_workers()
after = generate_latest(registry).decode().count("ml_service_worker_up{")
print(before, after)
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "1"]  # the exited child's gauge is gone, this process's stays
