"""/metrics: hot swaps, failed model loads, the Totara probe, auto's candidates and the download seconds are exposed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from ml_service.api.app import create_app
from ml_service.auth import signed_headers
from ml_service.config import Settings
from ml_service.metrics_training import TrainingCollector
from ml_service.store import ModelStore
from ml_service.training.logs import append_jsonl
from tests.api.support import RunningServer, closed_port, make_model
from tests.test_metrics import _exposition, samples

KEY = "events-test-key"


def test_hot_swaps_load_failures_and_probe(tmp_path: Path) -> None:
    settings = Settings(totara_url=f"http://127.0.0.1:{closed_port()}", totara_key=KEY, models_dir=tmp_path / "models",
                        logs_dir=tmp_path / "logs")
    store = ModelStore(settings.recommender_dir)
    store.publish("7", make_model(seed=1))
    app = create_app(settings, store, refresh_interval_s=None)
    server = RunningServer(app).start()
    swaps = ("ml_service_model_hot_swaps_total", (("tenant", "7"),))
    failures = ("ml_service_model_load_failures_total", (("tenant", "7"),))
    try:
        def scrape() -> dict:  # type: ignore[type-arg]
            return samples(httpx.get(server.url + "/metrics", timeout=10).text)

        before = scrape()
        store.publish("7", make_model(seed=2))
        app.state.recommender.refresh()
        after = scrape()
        assert after[swaps] - before.get(swaps, 0.0) == 1
        assert after.get(failures, 0.0) == before.get(failures, 0.0)
        broken = store.publish("7", make_model(seed=3))
        (store.root / "7" / broken / "item_ids.json").write_text(json.dumps(["changed"] * 11))  # its SHA-256 no longer matches
        app.state.recommender.refresh()
        last = scrape()
        assert last[failures] - after.get(failures, 0.0) == 1 and last[swaps] == after[swaps]  # the previous version serves on
        assert app.state.recommender.state.indexes["7"].version != broken
        httpx.get(server.url + "/health-check", headers=signed_headers(KEY), timeout=10)  # Totara is unreachable
        assert scrape()[("ml_service_totara_probe_up", ())] == 0
    finally:
        server.stop()


def test_auto_candidates_and_download_seconds_from_the_training_log(tmp_path: Path) -> None:
    log = tmp_path / "training.jsonl"
    append_jsonl(log, {"event": "tenant", "tenant": "0", "state": "trained", "at": time.time(), "seconds": {"fit": 3.0},
                       "auto": {"seconds": {"popular": 0.5, "als": 2.5}, "scores": {"popular": 0.1, "als": 0.3}}})
    append_jsonl(log, {"event": "run", "ok": True, "at": time.time(), "download": {"ok": True, "seconds": 1.25, "bytes": 10}})
    append_jsonl(log, {"event": "run", "ok": False, "at": time.time(), "download": {"ok": False, "seconds": 0.5, "bytes": 0}})
    got = samples(_exposition(TrainingCollector(log))[0])
    assert got[("ml_service_training_auto_candidate_seconds", (("candidate", "als"), ("tenant", "0")))] == 2.5
    assert got[("ml_service_training_auto_candidate_score", (("candidate", "als"), ("tenant", "0")))] == 0.3
    assert got[("ml_service_download_seconds_total", ())] == 1.75
    assert got[("ml_service_download_runs_total", (("outcome", "failed"),))] == 1
    assert got[("ml_service_training_run_stage_seconds", (("stage", "download"),))] == 0.5  # the last run's
