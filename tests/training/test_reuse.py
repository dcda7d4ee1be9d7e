"""Scheduled retraining reuses the last search: refit its choice when the data changed little, search again when
it changed a lot, every ML_AUTO_RESEARCH_EVERY runs, or when the refit validates clearly worse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ml_service.config import Settings
from ml_service.demo.generate import generate_export
from ml_service.models import registry
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.context import TrainContext
from ml_service.training.auto import train_auto
from ml_service.training.pipeline import run_training
from ml_service.training.reuse import data_change, decide, train_auto_or_reuse
from tests.synthetic import make_tenant

SIZES = {"users": 100, "items": 50, "interactions": 1000}


def _previous(**search: Any) -> dict[str, Any]:
    return {"choice": "ease", "params": {"ease": {"lambda": 10.0, "weighting": "binary"}}, "scores": {"ease": 0.3},
            "search": {"sizes": dict(SIZES), "protocol": "latest", "runs_since_search": 0, "score": 0.3} | search}


def test_decide() -> None:
    args = {"research_every": 7, "change_threshold": 0.1, "protocol": "latest"}
    assert not decide(None, SIZES, **args).reuse
    same = decide(_previous(), SIZES, **args)
    assert same.reuse and same.change == 0.0 and same.runs_since_search == 1
    grown = dict(SIZES, interactions=1200)
    assert data_change(SIZES, grown) == pytest.approx(0.2)
    changed = decide(_previous(), grown, **args)
    assert not changed.reuse and "changed by 20.0%" in changed.reason
    assert decide(_previous(), dict(SIZES, interactions=1050), **args).reuse
    due = decide(_previous(runs_since_search=6), SIZES, **args)
    assert not due.reuse and "7 runs since the last full search" in due.reason
    assert not decide(_previous(protocol="random"), SIZES, **args).reuse
    assert not decide(_previous(), SIZES, **(args | {"research_every": 1})).reuse


def test_a_refit_that_validates_clearly_worse_searches_again() -> None:
    data = make_tenant(seed=4)
    searched: list[str] = []

    def search() -> Any:
        searched.append("full")
        return train_auto(ctx, candidates=("ease",))

    ctx = TrainContext(data, threads=1, seed=4, budget_s=600, protocol="latest")
    args = {"search": search, "algorithm": registry.get, "research_every": 7, "change_threshold": 10.0}
    sizes = {"users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}
    honest = _previous(sizes=sizes)
    first = train_auto_or_reuse(ctx, None, **args)
    honest["params"], honest["scores"] = first.params, first.scores
    honest["search"]["score"] = first.scores["ease"]
    assert searched == ["full"] and first.model.info["auto"]["search"]["kind"] == "full"
    reused = train_auto_or_reuse(ctx, honest, **args)
    assert searched == ["full"] and reused.choice == "ease"
    record = reused.model.info["auto"]["search"]
    assert record["kind"] == "reuse" and record["runs_since_search"] == 1
    assert record["refit"]["ndcg@10"] == pytest.approx(first.scores["ease"], abs=1e-6)  # same data, same split
    inflated = honest | {"scores": {"ease": first.scores["ease"] + 0.2}}
    again = train_auto_or_reuse(ctx, inflated, **args)
    assert searched == ["full", "full"]
    record = again.model.info["auto"]["search"]
    assert record["kind"] == "full" and "validates clearly worse" in record["decision"]["reason"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, interactions in (("base", 3000), ("grown", 4500)):
        out[name] = tmp_path_factory.mktemp(name)
        generate_export(out[name], seed=5, users=150, items=60, interactions=interactions, tenants=0)
    return out


def _finals(settings: Settings) -> list[dict[str, Any]]:
    lines = settings.training_jsonl.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "tenant"]


def test_scheduled_runs_refit_when_the_data_changed_little_and_search_when_it_changed_a_lot(
    tmp_path: Path, exports: dict[str, Path]
) -> None:
    settings = Settings(models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="auto", num_threads=1,
                        auto_time_budget_s=120)
    settings.ensure_dirs()
    store = ModelStore(settings.recommender_dir)
    for export in ("base", "base", "grown"):
        assert run_training(settings, FolderSource(exports[export]), store).ok
    first, second, third = (r["auto"] for r in _finals(settings))
    assert first["search"]["kind"] == "full" and first["search"]["decision"]["reason"] == "no earlier search recorded"
    assert second["search"]["kind"] == "reuse" and second["choice"] == first["choice"]
    assert second["search"]["decision"]["change"] == 0.0
    assert second["search"]["refit"]["validation"] == "skipped: the export is unchanged"  # same SHA-256
    assert "seconds" not in second  # no candidate was tuned
    assert third["search"]["kind"] == "full" and third["search"]["decision"]["change"] > settings.auto_reuse_change
    assert len(third["scores"]) > 2  # the candidates were tuned again
    current = store.load("0").meta["info"]["auto"]["search"]
    assert current["kind"] == "full" and current["sizes"]["interactions"] == third["search"]["sizes"]["interactions"]
