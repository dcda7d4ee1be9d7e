"""Root status files: status.json round trip, merging a partial run, absence counters; STATE tokens."""

from __future__ import annotations

from pathlib import Path

from ml_service.store import ModelStore
from ml_service.store import status as status_files


def test_status_round_trip(store: ModelStore) -> None:
    assert store.read_status() == {}
    statuses = {"0": {"state": "trained", "msg": "success"}, "3": {"state": "failed", "msg": "user_data_3.csv, line 4: ..."}}
    store.write_status(statuses)
    assert store.read_status() == statuses
    assert not list(store.root.glob("*.tmp"))
    (store.root / "status.json").write_text("{broken")
    assert store.read_status() == {}
