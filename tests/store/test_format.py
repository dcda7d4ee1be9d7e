"""The version format: round trips, integrity checks, no pickle, what publish refuses, versions written by old code."""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.models.parts import replace_arrays
from ml_service.models.base import FACTORS
from ml_service.store import CorruptVersionError, ModelStore, StoreError
from tests.store.support import assert_same_model, factors_model, item_item_model

LEGACY = Path(__file__).parent / "fixtures" / "legacy_store"


def test_factors_round_trip_with_csr_and_odd_ids(store: ModelStore) -> None:
    model = factors_model()
    version = store.publish("0", model)
    loaded = store.load("0")
    assert loaded.version == version and loaded.tenant == "0"
    assert_same_model(model, loaded.model)
    assert loaded.model.params == {"epochs": 12, "components": 4}
    assert loaded.model.metrics["ndcg@10"] == pytest.approx(0.25)
    meta = loaded.meta
    assert meta["format_version"] == 1 and meta["data_fingerprint"] == "abc123" and meta["kind"] == FACTORS
    assert set(meta["library_versions"]) >= {"numpy", "scipy", "lightfm", "implicit", "ml_service"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at"])
    assert meta["files"]["user_factors.npy"]["shape"] == [10, 4] and len(meta["files"]["user_factors.npy"]["sha256"]) == 64
    # memory-mapped read-only: several server workers share the pages, nobody can scribble on them
    assert not loaded.model.user_factors.flags.writeable
    with pytest.raises(ValueError):
        loaded.model.user_factors[0, 0] = 1.0


def test_item_item_round_trip_without_mmap(store: ModelStore) -> None:
    model = item_item_model()
    store.publish("7", model)
    loaded = store.load("7", mmap=False)
    assert_same_model(model, loaded.model)
    assert loaded.model.positives.nnz == 0 and loaded.model.content_vectors.shape == (6, 0)
    assert loaded.model.item_item.flags.writeable  # a private copy


def test_changed_content_of_same_size_fails_the_hash(store: ModelStore) -> None:
    version = store.publish("0", factors_model(0))
    path = store.root / "0" / version / "popularity.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptVersionError, match=r"popularity\.npy: SHA-256 differs"):
        store.load("0", version)
    store.load("0", version, verify_hashes=False)  # sizes, dtypes and shapes still agree


def test_object_array_is_never_unpickled(store: ModelStore, tmp_path: Path) -> None:
    version = store.publish("0", factors_model(0))
    folder = store.root / "0" / version
    marker = tmp_path / "pwned"
    evil = np.empty(7, dtype=object)
    evil[:] = [_Evil(str(marker))] * 7
    np.save(folder / "popularity.npy", evil, allow_pickle=True)
    # make meta.json agree with the file so only allow_pickle=False stands in the way
    meta = json.loads((folder / "meta.json").read_text())
    spec = meta["files"]["popularity.npy"]
    spec["size"] = (folder / "popularity.npy").stat().st_size
    spec["sha256"] = hashlib.sha256((folder / "popularity.npy").read_bytes()).hexdigest()
    spec["dtype"] = "|O"
    (folder / "meta.json").write_text(json.dumps(meta))
    for mmap in (True, False):
        with pytest.raises(CorruptVersionError, match="popularity.npy"):
            store.load("0", version, mmap=mmap)
    assert not marker.exists()
    assert not list(store.root.rglob("*.pkl")) and not list(store.root.rglob("*.sav"))


class _Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.path,))


def test_publish_refuses_inconsistent_or_object_models(store: ModelStore) -> None:
    model = factors_model()
    model = dataclasses.replace(model, scoring=replace_arrays(model.scoring, item_biases=np.zeros(3, np.float32)))
    with pytest.raises(StoreError, match=r"item_biases has shape \(3,\), expected \(7,\)"):
        store.publish("0", model)
    model = factors_model()
    model = dataclasses.replace(model, extras=replace_arrays(model.extras, popularity=np.array([object()] * 7, dtype=object)))
    with pytest.raises(StoreError, match="object arrays cannot be stored"):
        store.publish("0", model)
    model = factors_model()
    model.item_ids = [1, 2, 3, 4, 5, 6, 7]  # type: ignore[list-item]
    with pytest.raises(StoreError, match=r"item_ids\[0\] is 1"):
        store.publish("0", model)
    assert store.versions("0") == [] and not [p for p in (store.root / "0").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "field, bad",
    [("item_factors", np.nan), ("user_biases", np.inf), ("popularity", -np.inf), ("similarity_vectors", np.nan)],
)
def test_publish_refuses_non_finite_arrays_naming_them(store: ModelStore, field: str, bad: float) -> None:
    model = factors_model()
    getattr(model, field).flat[3] = bad  # in place: a part refuses non-finite values when built
    with pytest.raises(StoreError, match=rf"tenant 0's model: model\.{field} \(shape .*\) holds 1 non-finite value"):
        store.publish("0", model)
    assert store.versions("0") == [] and store.current_version("0") is None


def test_publish_refuses_non_finite_values_inside_a_sparse_matrix(store: ModelStore) -> None:
    model = item_item_model()
    model.history.data[0] = np.nan  # in place: a part refuses NaN when built
    with pytest.raises(StoreError, match=r"model\.history \(data of the sparse matrix shape \(5, 6\)\) holds 1 non-finite"):
        store.publish("7", model)


@pytest.mark.parametrize("codes, message", [
    (np.array([0, 1, 2, 3, 4, 5, 0], np.int8), r"model\.item_types\[5\] is 5, expected a code in 0\.\.4"),
    (np.array([0, -1, 2, 3, 4, 0, 0], np.int8), r"model\.item_types\[1\] is -1"),
    (np.zeros(7, np.float32), r"model\.item_types has dtype float32, expected integer type codes"),
])
def test_publish_refuses_item_types_out_of_range(store: ModelStore, codes: np.ndarray, message: str) -> None:
    model = factors_model()
    model.item_types = codes
    with pytest.raises(StoreError, match=message):
        store.publish("0", model)
    assert store.versions("0") == []


def test_a_store_written_by_the_previous_single_module_store_loads(tmp_path: Path) -> None:
    """tests/store/fixtures/legacy_store was written by store.py of commit 2adad77 (make_legacy_store.py)."""
    shutil.copytree(LEGACY, tmp_path / "legacy")
    store = ModelStore(tmp_path / "legacy" / "recommender")
    assert store.tenants() == ["0", "3"]
    assert store.read_status() == {"0": {"state": "trained", "msg": "success"}, "3": {"state": "trained", "msg": "success"}}
    assert store.state_token() and store.pinned_version("0") is None
    factors = store.load("0", verify_hashes=True)
    assert factors.version == store.current_version("0") == "20261202T182625.942120Z-fe0c42"
    model = factors.model
    assert model.kind == FACTORS and model.user_ids == ["12", "a,b", "ünïcödé-日本", "line\nbreak"]
    assert model.item_ids == ["container_course1", "engage_article2", "totara_playlist3"]
    assert np.array_equal(model.item_biases, np.array([0.1, 0.2, 0.3], np.float32))
    assert np.array_equal(model.user_cold, [False, False, True, False]) and model.user_factors.shape == (4, 2)
    assert (model.positives != sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], np.float32))).nnz == 0
    assert model.params == {"epochs": 3, "no_components": 2} and factors.meta["data_fingerprint"] == "legacy"
    item_item = store.load("3", mmap=False).model
    assert item_item.kind == "item_item" and np.array_equal(item_item.item_item, [[0, 1], [1, 0]])
    assert all(info.ok for tenant in ("0", "3") for info in store.versions(tenant))
    # and the new code keeps working on it: publish beside the old version, roll back to it
    newer = store.publish("0", factors_model())
    assert store.current_version("0") == newer and store.rollback("0") == factors.version
