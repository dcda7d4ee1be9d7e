"""The whole training run: generated export → folder/HTTP source → load → train → publish → logs, and its failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ml_service.config import Settings
from ml_service.demo.generate import generate_export
from ml_service.demo.simulator import TotaraSimulator
from ml_service.source.folder import FolderSource
from ml_service.source.totara_http import TotaraHttpSource
from ml_service.store import ModelStore
from ml_service.training.logs import DOWNLOAD_FAILED_MSG, read_summary
from ml_service.training.pipeline import SMALL_TENANT_MSG, run_training

KEY = "pipeline-test-key"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=3, users=120, items=60, interactions=2400, tenants=1)
    return out


def _settings(tmp_path: Path, **changes: object) -> Settings:
    settings = Settings(
        models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="mf", num_threads=1,
        auto_time_budget_s=30, download_retry_wait_s=0.01, read_timeout_s=5, anytime_publish=False,
    ).with_(**changes)
    settings.ensure_dirs()
    return settings


def test_folder_run_trains_publishes_and_logs_every_tenant(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, FolderSource(export), store)
    assert result.ok and [r.tenant for r in result.tenants] == ["0", "1"]
    for r in result.tenants:
        assert r.state == "trained" and r.version == store.current_version(r.tenant)
        loaded = store.load(r.tenant)
        assert loaded.model.metrics["ndcg@10"] > 0 and loaded.model.info["data_fingerprint"]
        assert loaded.model.content_vectors is not None
    rows = read_summary(settings.train_summary_log)
    assert [(r["ALGORITHM"], r["TENANT_ID"], r["MSG"]) for r in rows] == [("mf", "0", "success"), ("mf", "1", "success")]
    assert rows[0]["EPOCHS"] and rows[0]["N_EMBEDDINGS"] and rows[0]["SCORE"]
    records = [json.loads(line) for line in settings.training_jsonl.read_text().splitlines()]
    assert records[-1]["event"] == "run" and records[-1]["ok"] is True
    assert records[0]["sizes"]["users"] > 0 and "train" in records[0]["seconds"]
    assert store.read_status()["1"]["state"] == "trained"


def test_http_round_trip_through_the_simulator(tmp_path: Path, export: Path) -> None:
    with TotaraSimulator(export, KEY, port=0) as simulator:
        settings = _settings(tmp_path, totara_url=simulator.url, totara_key=KEY, algorithm="popular")
        store = ModelStore(settings.recommender_dir)
        result = run_training(settings, TotaraHttpSource(settings, settings.models_dir / "staging"), store)
    assert result.ok and len(result.tenants) == 2
    assert not any((settings.models_dir / "staging").iterdir())  # staging cleaned up


@pytest.mark.parametrize("algorithm, anytime", [("popular", False), ("mf", True)])
def test_a_broken_tenant_fails_alone_and_keeps_its_previous_model(
    tmp_path: Path, export: Path, algorithm: str, anytime: bool
) -> None:
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    settings = _settings(tmp_path, algorithm=algorithm, anytime_publish=anytime)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(folder), store).ok
    before = store.current_version("1")
    (folder / "item_data_1.csv").write_text("item_id,document\nengage_article1,x\n")  # type columns missing
    result = run_training(settings, FolderSource(folder), store)
    assert not result.ok
    by_tenant = {r.tenant: r for r in result.tenants}
    assert by_tenant["0"].state == "trained"
    assert by_tenant["1"].state == "failed" and "item_data_1.csv" in by_tenant["1"].msg
    assert store.current_version("1") == before  # the old model keeps serving
    assert store.read_status()["1"]["state"] == "serving-previous"
    assert read_summary(settings.train_summary_log)[-1]["MSG"].startswith("Invalid export data: item_data_1.csv")


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00\x9c garbage", b"../0/20261202T000000.000000Z-abcdef\n"])
def test_a_failing_tenant_with_a_garbage_current_does_not_crash_the_run(tmp_path: Path, export: Path, garbage: bytes) -> None:
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    settings = _settings(tmp_path, algorithm="popular")
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(folder), store).ok
    (store.root / "1" / "CURRENT").write_bytes(garbage)
    (folder / "item_data_1.csv").write_text("item_id,document\nengage_article1,x\n")  # tenant 1 fails to load
    result = run_training(settings, FolderSource(folder), store)
    assert [(r.tenant, r.state) for r in result.tenants] == [("0", "trained"), ("1", "failed")]
    status = store.read_status()
    assert status["0"]["state"] == "trained" and status["1"]["state"] == "failed"
    assert (store.root / "1" / "CURRENT").read_bytes() == garbage  # left for the operator or the next good publish


def test_download_failure_logs_the_reference_all_row(tmp_path: Path) -> None:
    settings = _settings(tmp_path, totara_url="http://127.0.0.1:9", totara_key=KEY, connect_timeout_s=1)
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, TotaraHttpSource(settings, settings.models_dir / "staging"), store)
    assert not result.ok and "127.0.0.1:9" in result.error
    row = read_summary(settings.train_summary_log)[-1]
    assert (row["TENANT_ID"], row["MSG"]) == ("all", DOWNLOAD_FAILED_MSG)


@pytest.mark.parametrize("anytime", [False, True])
def test_too_small_tenant_gets_popular_and_the_reference_message(tmp_path: Path, anytime: bool) -> None:
    folder = tmp_path / "small"
    generate_export(folder, seed=1, users=8, items=30, interactions=100, tenants=0)
    settings = _settings(tmp_path, anytime_publish=anytime)
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, FolderSource(folder), store)
    (r,) = result.tenants
    assert r.state == "fallback" and r.algorithm == "popular"
    assert len(store.versions("0")) == 1 and len(read_summary(settings.train_summary_log)) == 1  # no quick model too
    assert r.msg == SMALL_TENANT_MSG.format(tenant="0")
    assert store.load("0").model.algorithm == "popular"
    row = read_summary(settings.train_summary_log)[-1]
    assert row["MSG"] == SMALL_TENANT_MSG.format(tenant="0") and row["EPOCHS"] == ""
    assert "Skipping" not in row["MSG"] and "served its most popular items" in row["MSG"]  # spec §11 item 12
