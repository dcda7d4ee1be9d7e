"""Anytime publishing: quick `popular` models for every tenant first (breadth first), then the final ones; an
existing better model is never replaced by the quick one; ML_ANYTIME_PUBLISH=0 behaves as before."""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from ml_service.config import Settings
from ml_service.demo.generate import generate_export
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.store.format import created_from_id
from ml_service.training.anytime import QUICK_SUMMARY_ALGORITHM, may_replace, quick_personal_algorithms
from ml_service.training.logs import read_summary
from ml_service.training.pipeline import run_training
from tests.api.conftest import serve  # noqa: F401 - the fixture
from tests.api.support import KEY, signed


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=5, users=150, items=60, interactions=3000, tenants=1)
    return out


def _settings(tmp_path: Path, **changes: object) -> Settings:
    settings = Settings(
        models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="ease", num_threads=1,
        auto_time_budget_s=20, totara_key=KEY,
    ).with_(**changes)
    settings.ensure_dirs()
    return settings


def _records(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in settings.training_jsonl.read_text().splitlines()]


def _stage(store: ModelStore, tenant: str, version: str) -> str:
    return store.load(tenant, version).meta["info"]["stage"]


def test_quick_models_of_every_tenant_come_before_any_final_one(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, FolderSource(export), store)
    assert result.ok and [r.tenant for r in result.tenants] == ["0", "1"]
    events = [(r["event"], r.get("stage"), r.get("tenant")) for r in _records(settings)]
    assert events == [("tenant-quick", "quick", "0"), ("tenant-quick", "quick", "1"),
                      ("tenant", "final", "0"), ("tenant", "final", "1"), ("run", None, None)]
    quick = {r["tenant"]: r for r in _records(settings) if r["event"] == "tenant-quick"}
    assert all(q["published"] and q["reason"] == "no model served yet" for q in quick.values())
    versions = {t: [v.version for v in reversed(store.versions(t))] for t in ("0", "1")}  # oldest first
    for tenant, (first, final) in versions.items():
        assert (store.load(tenant, first).model.algorithm, _stage(store, tenant, first)) == ("popular", "quick")
        assert (store.load(tenant, final).model.algorithm, _stage(store, tenant, final)) == ("ease", "final")
        assert quick[tenant]["version"] == first and store.current_version(tenant) == final
    # Across tenants, in the store's own clock: tenant 1's quick model is older than tenant 0's final one.
    assert created_from_id(versions["1"][0]) < created_from_id(versions["0"][1])
    rows = [(r["ALGORITHM"], r["TENANT_ID"], r["MSG"]) for r in read_summary(settings.train_summary_log)]
    assert rows == [(QUICK_SUMMARY_ALGORITHM, "0", "success"), (QUICK_SUMMARY_ALGORITHM, "1", "success"),
                    ("ease", "0", "success"), ("ease", "1", "success")]


def test_an_existing_better_model_keeps_serving_until_the_final_one(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings.with_(anytime_publish=False), FolderSource(export), store).ok
    before = {t: store.current_version(t) for t in ("0", "1")}
    serving_when_full_pass_starts: dict[str, str | None] = {}

    def watch(event: str, details: dict[str, Any]) -> None:
        if event == "tenant-start" and not serving_when_full_pass_starts:
            serving_when_full_pass_starts.update({t: store.current_version(t) for t in ("0", "1")})

    assert run_training(settings, FolderSource(export), store, reporter=watch).ok
    assert serving_when_full_pass_starts == before  # the quick pass replaced nothing
    for record in (r for r in _records(settings) if r["event"] == "tenant-quick"):
        existing = record["existing"]
        assert existing["version"] == before[record["tenant"]] and existing["algorithm"] == "ease"
        assert existing["ndcg@10"] > record["metrics"]["ndcg@10"]  # the precondition: ease validates better here
        assert not record["published"] and "validates better" in record["reason"]
    for tenant in ("0", "1"):
        assert store.current_version(tenant) != before[tenant]  # the run's final model replaced it
        assert [v.algorithm for v in store.versions(tenant)] == ["ease", "ease"]  # no quick version stored


def test_may_replace_compares_the_served_models_validation(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path, anytime_publish=False)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    theirs = store.versions("0")[0].metrics["ndcg@10"]
    assert may_replace(store, "0", theirs + 0.01, "latest")[0]
    assert may_replace(store, "0", theirs, "latest")[0]  # at least as well
    allowed, reason, _ = may_replace(store, "0", theirs - 0.01, "latest")
    assert not allowed and "validates better" in reason
    allowed, reason, _ = may_replace(store, "0", theirs + 0.5, "random")
    assert not allowed and "another protocol (latest)" in reason
    store.pin("0")
    allowed, reason, _ = may_replace(store, "0", theirs + 0.5, "latest")
    assert not allowed and reason.startswith("pinned to version")
    assert may_replace(store, "1", 0.0, "latest")[:2] == (True, "no model served yet")


def test_a_pinned_tenant_gets_no_quick_version_and_keeps_its_pointer(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings.with_(anytime_publish=False), FolderSource(export), store, tenants=["0"]).ok
    pinned = store.pin("0")
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    assert store.current_version("0") == pinned
    assert [v.algorithm for v in store.versions("0")] == ["ease", "ease"]  # the final one stored, not served
    (quick,) = [r for r in _records(settings) if r["event"] == "tenant-quick"]
    assert not quick["published"] and quick["reason"] == f"pinned to version {pinned}"


def test_setting_off_trains_as_before(tmp_path: Path, export: Path) -> None:
    settings = Settings.from_env({"ML_ANYTIME_PUBLISH": "0"}, require_totara=False).with_(
        models_dir=tmp_path / "models", logs_dir=tmp_path / "logs", algorithm="ease", num_threads=1)
    settings.ensure_dirs()
    assert not settings.anytime_publish
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store).ok
    assert [(r["event"], r.get("tenant")) for r in _records(settings)] == [("tenant", "0"), ("tenant", "1"), ("run", None)]
    assert all([v.algorithm for v in store.versions(t)] == ["ease"] for t in ("0", "1"))
    assert [r["ALGORITHM"] for r in read_summary(settings.train_summary_log)] == ["ease", "ease"]


def _first_user_and_type(export: Path, tenant: str) -> tuple[str, str]:
    with (export / f"user_interactions_{tenant}.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    return row["user_id"], row["item_id"].rstrip("0123456789")


def test_a_real_server_answers_from_the_quick_models_before_any_full_search(
    tmp_path: Path, export: Path, serve: Callable[..., str]  # noqa: F811
) -> None:
    settings = _settings(tmp_path, algorithm="auto", auto_time_budget_s=3)
    store = ModelStore(settings.recommender_dir)
    url = serve(settings, store, refresh_interval_s=0.05)
    seen: dict[str, Any] = {}

    def at_full_pass(event: str, details: dict[str, Any]) -> None:
        if event != "tenant-start" or seen:
            return
        seen["algorithms"] = {t: [v.algorithm for v in store.versions(t)] for t in ("0", "1")}
        for tenant in ("0", "1"):
            user, item_type = _first_user_and_type(export, tenant)
            params = {"totara_user_id": user, "item_type": item_type, "tenant": tenant, "n_items": "3"}
            deadline = time.monotonic() + 30
            while True:
                body = httpx.get(url + "/user-items", params=params, headers=signed(), timeout=5).json()
                if body.get("success") or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            seen[tenant] = body

    assert run_training(settings, FolderSource(export), store, reporter=at_full_pass).ok
    # only the quick models exist yet, and under `auto` each is personalised: it validated above popular
    assert all(len(names) == 1 and names[0] in ("knn", "als") for names in seen["algorithms"].values()), seen
    for tenant in ("0", "1"):
        (quick,) = store.versions(tenant)[-1:]
        info = store.load(tenant, quick.version).model.info["quick"]
        assert set(info["validation"]) == {"popular", "knn", "als"}
        assert info["validation"][info["chosen"]] == max(info["validation"].values()) > info["validation"]["popular"]
    for tenant in ("0", "1"):
        assert seen[tenant]["success"] is True and len(seen[tenant]["items"]) == 3, seen[tenant]
    finals = {t: store.load(t).model for t in ("0", "1")}
    assert all(m.info["stage"] == "final" and m.info["auto"]["choice"] for m in finals.values())


def test_a_tenant_serving_a_personalised_model_gets_no_personalised_quick_fit(tmp_path: Path, export: Path) -> None:
    settings = _settings(tmp_path, algorithm="auto", auto_time_budget_s=3)
    store = ModelStore(settings.recommender_dir)
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    quick = [r for r in _records(settings) if r["event"] == "tenant-quick"]
    assert quick[0]["algorithm"] in ("knn", "als") and quick[0]["published"]
    assert quick[1]["algorithm"] == "popular" and not quick[1]["published"]  # the second run only bridges
    first_quick = store.load("0", store.versions("0")[-1].version).model.info["quick"]
    assert first_quick["chosen"] == quick[0]["algorithm"] and "knn" in first_quick["validation"]


@pytest.mark.parametrize("slow", [True, False], ids=["slow-personal", "fast-personal"])
def test_popular_comes_first_only_when_the_personalised_quick_models_would_take_long(
    tmp_path: Path, export: Path, monkeypatch: pytest.MonkeyPatch, slow: bool
) -> None:
    from ml_service.training import anytime

    # The fixture's knn + als are estimated well under a second: a threshold of 0 makes them "slow".
    monkeypatch.setattr(anytime, "QUICK_POPULAR_FIRST_S", 0.0 if slow else 3600.0)
    settings = _settings(tmp_path, algorithm="auto", auto_time_budget_s=3)
    store = ModelStore(settings.recommender_dir)
    served_when_personal_fits: list[str | None] = []
    fit = anytime.quick_model

    def watching(data: Any, settings: Settings, *, personal: bool = False) -> Any:
        if personal:
            served_when_personal_fits.append(store.current_version("0"))
        return fit(data, settings, personal=personal)

    monkeypatch.setattr(anytime, "quick_model", watching)
    assert run_training(settings, FolderSource(export), store, tenants=["0"]).ok
    quick = [(r["algorithm"], r["published"]) for r in _records(settings) if r["event"] == "tenant-quick"]
    rows = [r["ALGORITHM"] for r in read_summary(settings.train_summary_log)]
    versions = [v.algorithm for v in reversed(store.versions("0"))]  # oldest first
    if slow:
        assert quick[0] == ("popular", True) and quick[1][0] in ("knn", "als") and quick[1][1]
        first, personal = [r for r in _records(settings) if r["event"] == "tenant-quick"]
        # each record says when its model was published, not when it was logged (after the personalised fit)
        personal_created = dt.datetime.fromisoformat(created_from_id(personal["version"])).timestamp()
        assert first["at"] <= personal_created + 0.001 <= personal["at"] + 0.002
        assert rows[:2] == [QUICK_SUMMARY_ALGORITHM, "quick:" + quick[1][0]]
        assert versions[:2] == ["popular", quick[1][0]]
        # the learners had popular's answers while the personalised models were fitted
        assert served_when_personal_fits == [store.versions("0")[-1].version]
    else:
        assert len(quick) == 1 and quick[0][0] in ("knn", "als") and quick[0][1]
        assert versions[0] == quick[0][0] and served_when_personal_fits == [None]


def test_popular_is_not_published_twice_when_it_validates_best(tmp_path: Path, export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_service.training import anytime
    from ml_service.training.prepared import Preloaded

    monkeypatch.setattr(anytime, "QUICK_POPULAR_FIRST_S", 0.0)
    monkeypatch.setattr(anytime, "QUICK_PERSONAL", ("popular",))  # a "personalised" pass that can only pick popular
    settings = _settings(tmp_path, algorithm="auto")
    store = ModelStore(settings.recommender_dir)
    from ml_service.data.load import load_tenant

    snapshot = FolderSource(export).fetch()
    outcome = anytime.publish_quick(settings, store, Preloaded("0", load_tenant(snapshot.files("0")), "x", {}))
    assert outcome.first is not None and outcome.first.published and outcome.first.algorithm == "popular"
    assert not outcome.published and "served already" in outcome.reason
    assert [v.algorithm for v in store.versions("0")] == ["popular"]


def test_the_quick_personalised_algorithms_respect_the_memory_limit() -> None:
    from tests.synthetic import make_tenant

    data = make_tenant(n_users=300, n_items=6000, seed=1)  # knn's dense similarity: ~36M item pairs
    settings = Settings()
    assert quick_personal_algorithms(data, settings) == (["knn", "als"], {})
    # knn's items² similarity estimated over the limit: ALS only, whose cost grows with the interactions
    from ml_service.training.costs import estimate

    knn_mb = estimate("knn", data.n_users, data.n_items, len(data.interactions)).peak_bytes / 2**20
    als_mb = estimate("als", data.n_users, data.n_items, len(data.interactions)).peak_bytes / 2**20
    assert als_mb < knn_mb
    names, left_out = quick_personal_algorithms(data, settings.with_(train_memory_mb=int((als_mb + knn_mb) / 2)))
    assert names == ["als"] and left_out["knn"].startswith("estimated peak")
    names, left_out = quick_personal_algorithms(data, settings.with_(train_memory_mb=64))
    assert names == [] and set(left_out) == {"knn", "als"}
