"""What the training run reports around publish: success after the pointer switch, the pin, a refused model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ml_service.config import Settings
from ml_service.demo.run import SAMPLE_DIR
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.pipeline import run_training


def _settings(tmp_path: Path) -> Settings:
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="popular", num_threads=1)
    settings.ensure_dirs()
    return settings


def test_a_prune_failure_after_the_switch_reports_the_tenant_trained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir, keep_versions=1)
    first = run_training(settings, FolderSource(SAMPLE_DIR), store, tenants=["0"])
    old = first.tenants[0].version
    (store.root / "0" / f".del-{old}").write_text("in the way")  # the prune's rename cannot happen
    with caplog.at_level(logging.ERROR, logger="ml_service.store"):
        result = run_training(settings, FolderSource(SAMPLE_DIR), store, tenants=["0"])
    assert result.ok and result.tenants[0].state == "trained" and result.tenants[0].msg == "success"
    assert store.current_version("0") == result.tenants[0].version != old
    assert store.read_status()["0"]["state"] == "trained"
    assert "pruning old versions failed" in caplog.text


def test_a_pinned_tenant_is_trained_and_stored_and_says_what_it_serves(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir)
    pinned = run_training(settings, FolderSource(SAMPLE_DIR), store, tenants=["0"]).tenants[0].version
    store.pin("0")
    result = run_training(settings, FolderSource(SAMPLE_DIR), store, tenants=["0"])
    assert result.ok and result.tenants[0].version != pinned
    assert store.current_version("0") == pinned
    assert store.read_status()["0"]["pinned"] == pinned
