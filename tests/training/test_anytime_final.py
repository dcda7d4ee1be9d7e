"""Anytime, the rest of item 1: the first candidate that beats `popular` is published while the search goes on,
and a run's final model never replaces a served model that validated better (read from the log and the store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ml_service.config import Settings
from ml_service.demo.generate import generate_export
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.gate import final_may_replace
from ml_service.training.interim import INTERIM_SUMMARY_PREFIX
from ml_service.training.logs import read_summary
from ml_service.training.pipeline import run_training


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=5, users=150, items=60, interactions=3000, tenants=1)
    return out


def _settings(tmp_path: Path, **changes: object) -> Settings:
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="ease", num_threads=1,
                        auto_time_budget_s=120).with_(**changes)
    settings.ensure_dirs()
    return settings


def _records(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in settings.training_jsonl.read_text().splitlines()]


def test_a_final_model_that_validates_worse_does_not_replace_the_served_one(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path, anytime_publish=False)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store).ok
    served = {t: store.current_version(t) for t in ("0", "1")}
    assert run_training(settings.with_(algorithm="popular"), FolderSource(export), store).ok
    finals = [r for r in _records(settings) if r["event"] == "tenant"][2:]
    assert [r["tenant"] for r in finals] == ["0", "1"]
    for record in finals:
        tenant = record["tenant"]
        ease_score = store.load(tenant, served[tenant]).meta["metrics"]["ndcg@10"]
        assert record["metrics"]["ndcg@10"] < ease_score  # the precondition: popular validates worse here
        assert record["gate"]["published"] is False and "validates better" in record["gate"]["reason"]
        assert record["version"] is None
        assert store.current_version(tenant) == served[tenant]
        assert [v.algorithm for v in store.versions(tenant)] == ["ease"]  # nothing stored
    # The same algorithm on the same data validates as well: it replaces the served version.
    assert run_training(settings, FolderSource(export), store).ok
    last = [r for r in _records(settings) if r["event"] == "tenant"][-2:]
    assert all(r["gate"]["published"] and r["version"] == store.current_version(r["tenant"]) for r in last)


def test_the_gate_lets_a_final_model_replace_a_quick_or_interim_one(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path, algorithm="knn")
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    (quick, final) = reversed(store.versions("0"))
    assert store.load("0", quick.version).meta["info"]["stage"] == "quick"
    store.rollback("0", quick.version)  # the quick popular model is served again
    allowed, reason, existing = final_may_replace(store, "0", 0.0, settings.validation_protocol)
    assert allowed and reason == "the served version is a quick model" and existing["version"] == quick.version
    store.rollback("0", final.version)
    allowed, reason, _ = final_may_replace(store, "0", final.metrics["ndcg@10"] - 0.01, settings.validation_protocol)
    assert not allowed and "validates better" in reason
    allowed, reason, _ = final_may_replace(store, "0", final.metrics["ndcg@10"] - 0.01, "random")
    assert allowed and "another protocol" in reason


def test_auto_publishes_the_first_candidate_that_beats_popular_before_its_final_model(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path, algorithm="auto", auto_research_every=1)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store).ok
    records = _records(settings)
    events = [(r["event"], r.get("tenant")) for r in records]
    assert events == [("tenant-quick", "0"), ("tenant-quick", "1"),  # breadth first: every tenant's quick model
                      ("tenant-interim", "0"), ("tenant", "0"), ("tenant-interim", "1"), ("tenant", "1"), ("run", None)]
    for tenant in ("0", "1"):
        quick, interim, final = (next(r for r in records if r["event"] == e and r.get("tenant") == tenant)
                                 for e in ("tenant-quick", "tenant-interim", "tenant"))
        assert interim["published"] and interim["metrics"]["ndcg@10"] > quick["metrics"]["ndcg@10"]
        auto = final["auto"]
        assert auto["interim"] == interim["algorithm"] != "popular"
        # the first candidate (cheapest first) that validated above popular
        order = [name for name in auto["order"] if name in auto["scores"]]
        first = next(name for name in order if name != "popular" and auto["scores"][name] > auto["scores"]["popular"])
        assert interim["algorithm"] == first
        versions = list(reversed(store.versions(tenant)))  # oldest first
        stages = [store.load(tenant, v.version).meta["info"]["stage"] for v in versions]
        assert stages == ["quick", "interim", "final"]
        assert [v.version for v in versions[:2]] == [quick["version"], interim["version"]]
        assert versions[2].version == final["version"] == store.current_version(tenant)
        assert final["metrics"]["ndcg@10"] >= quick["metrics"]["ndcg@10"]
    rows = [(r["ALGORITHM"].split(":")[0], r["TENANT_ID"]) for r in read_summary(settings.train_summary_log)]
    assert rows == [("quick", "0"), ("quick", "1"), (INTERIM_SUMMARY_PREFIX[:-1], "0"), ("auto", "0"),
                    (INTERIM_SUMMARY_PREFIX[:-1], "1"), ("auto", "1")]


def test_an_interim_model_no_better_than_the_served_one_is_not_published_again(tmp_path: Path, export: Path) -> None:
    from ml_service.data.load import load_tenant
    from ml_service.training.interim import publish_interim

    settings = _settings(tmp_path, algorithm="knn")
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings.with_(anytime_publish=False), FolderSource(export), store, tenants=["0"]).ok
    served = store.load("0")
    data = load_tenant(FolderSource(export).fetch().files("0"))
    record = publish_interim(settings, store, data, served.model, "fingerprint", "stamp")
    assert not record["published"] and "validates no better than the served knn model" in record["reason"]
    assert [v.version for v in store.versions("0")] == [served.version]  # nothing stored
