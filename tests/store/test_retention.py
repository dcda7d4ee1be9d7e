"""Tenant retention: absences counted per full run, then models, status and staged files deleted; serving forgets it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from ml_service.api.app import create_app
from ml_service.config import Settings
from ml_service.demo.generate import generate_export
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.store import status as status_files
from ml_service.store.retention import apply_retention
from ml_service.training.pipeline import run_training
from tests.api.support import KEY, RunningServer, closed_port, make_model, signed
from tests.store.support import factors_model

STAGED = ("user_interactions_{t}.csv", "user_data_{t}.csv", "item_data_{t}.csv")


def _stage(staging: Path, run: str, tenants: list[str]) -> Path:
    folder = staging / run
    folder.mkdir(parents=True)
    for tenant in tenants:
        for name in STAGED:
            (folder / name.format(t=tenant)).write_text("learner data\n")
    return folder


def test_a_tenant_absent_for_n_runs_in_a_row_is_deleted_with_its_staged_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender")
    for tenant in ("0", "5"):
        store.publish(tenant, factors_model())
    store.write_status({"0": {"state": "trained"}, "5": {"state": "trained"}})
    leftover = _stage(tmp_path / "staging", "20261201-killed-run", ["0", "5"])
    assert apply_retention(store, ["0"], runs=3, staging_root=tmp_path / "staging") == {}
    assert status_files.read_absent_runs(store.root) == {"5": 1}
    assert apply_retention(store, ["0", "5"], runs=3, staging_root=tmp_path / "staging") == {}  # back: count resets
    assert status_files.read_absent_runs(store.root) == {}
    for run in (1, 2):
        assert apply_retention(store, ["0"], runs=3, staging_root=tmp_path / "staging") == {}
        assert status_files.read_absent_runs(store.root) == {"5": run} and store.load("5")  # still served meanwhile
    deleted = apply_retention(store, ["0"], runs=3, staging_root=tmp_path / "staging")
    assert set(deleted) == {"5"}
    assert str(store.root / "5") in deleted["5"] and str(leftover / "user_data_5.csv") in deleted["5"]
    assert store.tenants() == ["0"] and set(store.read_status()) == {"0"}
    assert sorted(p.name for p in leftover.iterdir()) == ["item_data_0.csv", "user_data_0.csv", "user_interactions_0.csv"]
    assert status_files.read_absent_runs(store.root) == {}


def test_retention_zero_never_deletes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender")
    store.publish("5", factors_model())
    for _ in range(5):
        assert apply_retention(store, ["0"], runs=0) == {}
    assert store.tenants() == ["5"]


@pytest.fixture(scope="module")
def two_tenant_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=5, users=60, items=30, interactions=600, tenants=1)
    return out


def test_training_runs_count_absences_and_partial_runs_merge_the_status(tmp_path: Path, two_tenant_export: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(two_tenant_export, export)
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="popular", num_threads=1,
                        tenant_retention_runs=2)
    settings.ensure_dirs()
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store).ok
    assert store.tenants() == ["0", "1"]
    # `train --tenant 1` merges: tenant 0's entry stays (regression: it used to replace the whole status)
    before = store.read_status()["0"]
    assert run_training(settings, FolderSource(export), store, tenants=["1"]).ok
    assert store.read_status()["0"] == before and set(store.read_status()) == {"0", "1"}
    (export / "tenants.csv").write_text("tenants\n0\n")
    assert run_training(settings, FolderSource(export), store).ok
    assert store.tenants() == ["0", "1"] and status_files.read_absent_runs(store.root) == {"1": 1}
    run_training(settings, FolderSource(export), store, tenants=["0"])  # a partial run does not count
    assert status_files.read_absent_runs(store.root) == {"1": 1}
    assert run_training(settings, FolderSource(export), store).ok
    assert store.tenants() == ["0"] and set(store.read_status()) == {"0"}
    records = [json.loads(line) for line in settings.training_jsonl.read_text().splitlines()]
    deleted = [r for r in records if r["event"] == "tenant-deleted"]
    assert [r["tenant"] for r in deleted] == ["1"] and str(store.root / "1") in deleted[0]["deleted"]


def test_the_server_stops_knowing_a_deleted_tenant(tmp_path: Path) -> None:
    settings = Settings(totara_url=f"http://127.0.0.1:{closed_port()}", totara_key=KEY, models_dir=tmp_path / "models",
                        logs_dir=tmp_path / "logs", app_mode="Testing")
    store = ModelStore(settings.recommender_dir)
    for tenant in ("0", "5"):
        store.publish(tenant, make_model(seed=int(tenant)))
    store.write_status({"0": {"state": "trained", "msg": "success"}, "5": {"state": "trained", "msg": "success"}})
    server = RunningServer(create_app(settings, store, refresh_interval_s=0.05)).start()
    query = "/user-items?totara_user_id=2&item_type=engage_article&n_items=3&tenant="
    try:
        with httpx.Client(timeout=5.0) as http:
            assert http.get(server.url + query + "5", headers=signed()).json()["success"] is True
            for _ in range(3):
                apply_retention(store, ["0"], runs=3)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                answer = http.get(server.url + query + "5", headers=signed()).json()
                if answer.get("message") == "Bad request: no such tenant":
                    break
                time.sleep(0.05)
            assert answer == {"items": [], "message": "Bad request: no such tenant", "success": False}
            assert http.get(server.url + query + "0", headers=signed()).json()["success"] is True
    finally:
        server.stop()
