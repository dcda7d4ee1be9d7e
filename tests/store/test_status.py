"""Root status files: status.json round trip, merging a partial run, absence counters; STATE tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.store import ModelStore
from ml_service.store import status as status_files
from tests.store.support import factors_model


def test_status_round_trip(store: ModelStore) -> None:
    assert store.read_status() == {}
    statuses = {"0": {"state": "trained", "msg": "success"}, "3": {"state": "failed", "msg": "user_data_3.csv, line 4: ..."}}
    store.write_status(statuses)
    assert store.read_status() == statuses
    assert not list(store.root.glob("*.tmp"))
    (store.root / "status.json").write_text("{broken")
    assert store.read_status() == {}


def test_merge_keeps_the_other_tenants_and_replace_does_not(store: ModelStore) -> None:
    store.write_status({"0": {"state": "trained"}, "3": {"state": "failed"}})
    store.write_status({"3": {"state": "trained"}}, merge=True)
    assert store.read_status() == {"0": {"state": "trained"}, "3": {"state": "trained"}}
    store.write_status({"3": {"state": "fallback"}})
    assert store.read_status() == {"3": {"state": "fallback"}}


def test_absence_counters_survive_status_writes_until_replaced_or_forgotten(store: ModelStore) -> None:
    status_files.write_status(store.root, {"0": {"state": "trained"}}, absent_runs={"5": 2, "6": 1})
    store.write_status({"0": {"state": "failed"}})  # a run's status write keeps the counters
    assert status_files.read_absent_runs(store.root) == {"5": 2, "6": 1}
    status_files.write_status(store.root, {}, merge=True, forget=("5",))
    assert status_files.read_absent_runs(store.root) == {"6": 1} and store.read_status() == {"0": {"state": "failed"}}


def test_root_writes_use_unique_temporary_names(store: ModelStore, tmp_path: Path) -> None:
    """Regression: `STATE.tmp` / `status.json.tmp` were shared by every writer; a file in the way must not matter."""
    store.root.mkdir(parents=True)
    (store.root / "STATE.tmp").mkdir()  # the old shared name, occupied: the old code could not write at all
    (store.root / "status.json.tmp").mkdir()
    store.publish("0", factors_model())
    store.write_status({"0": {"state": "trained"}})
    assert store.state_token() and store.read_status() == {"0": {"state": "trained"}}


def test_an_unreadable_state_file_raises_for_the_server_to_keep_what_it_serves(store: ModelStore) -> None:
    store.root.mkdir(parents=True)
    (store.root / "STATE").mkdir()
    with pytest.raises(OSError):  # serving.Recommender.refresh logs it once and keeps its models
        store.state_token()
    (store.root / "STATE").rmdir()
    assert store.state_token() == ""  # missing: nothing published yet
