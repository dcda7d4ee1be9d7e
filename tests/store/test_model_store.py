"""ModelStore: round trips, atomic publish under SIGKILL, corruption fallback, rollback, pruning, no pickle."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.models.base import FACTORS, ITEM_ITEM, TrainedModel
from ml_service.store import (
    CURRENT_FILE,
    CorruptVersionError,
    ModelStore,
    StoreError,
    models_command,
)

ODD_IDS = ["12", "a,b", 'say "hi"', "line\nbreak", " spaced ", "ünïcödé-日本", "", "back\\slash", "\udc80lone", "tab\there"]


def factors_model(seed: int = 0, n_users: int = 10, n_items: int = 7, algorithm: str = "mf") -> TrainedModel:
    rng = np.random.default_rng(seed)
    positives = sp.csr_matrix(
        (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    )
    return TrainedModel(
        algorithm=algorithm,
        user_ids=ODD_IDS[:n_users] if n_users <= len(ODD_IDS) else [str(i) for i in range(n_users)],
        item_ids=[f"engage_article{i}" for i in range(n_items)],
        item_types=(np.arange(n_items) % 5).astype(np.int8),
        kind=FACTORS,
        user_factors=rng.standard_normal((n_users, 4), dtype=np.float32),
        item_factors=rng.standard_normal((n_items, 4), dtype=np.float32),
        user_biases=rng.standard_normal(n_users, dtype=np.float32),
        item_biases=rng.standard_normal(n_items, dtype=np.float32),
        positives=positives,
        user_cold=np.arange(n_users) % 3 == 0,
        popularity=rng.random(n_items, dtype=np.float32),
        similarity_vectors=rng.standard_normal((n_items, 3), dtype=np.float32),
        item_warm=np.ones(n_items, bool),
        params={"epochs": np.int64(12), "components": 4},
        metrics={"ndcg@10": np.float32(0.25), "auc": 0.8},
        info={"data_fingerprint": "abc123", "seconds": 1.5},
    )


def item_item_model() -> TrainedModel:
    rng = np.random.default_rng(1)
    history = sp.random(5, 6, density=0.4, format="csr", dtype=np.float32, random_state=1)
    return TrainedModel(
        algorithm="ease",
        user_ids=["1", "2", "3", "4", "5"],
        item_ids=["container_course1", "container_workspace2", "engage_article3", "engage_microlearning4", "totara_playlist5", "x,y\n"],
        item_types=np.array([0, 1, 2, 3, 4, 2], np.int8),
        kind=ITEM_ITEM,
        item_item=rng.standard_normal((6, 6), dtype=np.float32),
        history=history,
        positives=sp.csr_matrix((5, 6), dtype=np.float32),  # an empty CSR must round-trip too
        content_vectors=np.zeros((6, 0), np.float32),  # zero-size arrays too
    )


def assert_same_model(a: TrainedModel, b: TrainedModel) -> None:
    assert (a.algorithm, a.kind, a.user_ids, a.item_ids) == (b.algorithm, b.kind, b.user_ids, b.item_ids)
    for name in (
        "item_types", "user_factors", "item_factors", "user_biases", "item_biases", "item_item", "user_cold",
        "popularity", "similarity_vectors", "content_vectors", "item_warm",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    for name in ("history", "positives"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert sp.issparse(y) and x.shape == y.shape and x.dtype == y.dtype and (x != y).nnz == 0, name


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "recommender", keep_versions=5)


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


def test_publish_makes_current_and_versions_are_newest_first(store: ModelStore) -> None:
    assert store.current_version("0") is None and store.tenants() == []
    published = [store.publish("0", factors_model(seed)) for seed in range(3)]
    assert published == sorted(published) and len(set(published)) == 3  # time-sortable and unique
    assert store.current_version("0") == published[-1]
    infos = store.versions("0")
    assert [i.version for i in infos] == published[::-1]
    assert [i.is_current for i in infos] == [True, False, False]
    assert all(i.ok and i.algorithm == "mf" and i.size_bytes > 0 for i in infos)
    assert infos[0].metrics["ndcg@10"] == pytest.approx(0.25)
    store.publish("3", item_item_model())
    assert store.tenants() == ["0", "3"]


def test_keep_versions_prunes_but_never_the_current(tmp_path: Path) -> None:
    root = tmp_path / "recommender"
    store = ModelStore(root, keep_versions=3)
    v1, v2, v3 = (store.publish("0", factors_model(s)) for s in range(3))
    store.rollback("0", v1)
    removed = ModelStore(root, keep_versions=1).prune()
    assert removed == [str(root / "0" / v2)]
    assert {i.version for i in store.versions("0")} == {v3, v1} and store.current_version("0") == v1
    # publishing prunes too: keep 3 newest + the current
    more = [store.publish("0", factors_model(s)) for s in range(3)]
    assert [i.version for i in store.versions("0")] == more[::-1]


def test_rollback_to_previous_and_to_named_version(store: ModelStore) -> None:
    v1, v2, v3 = (store.publish("0", factors_model(s)) for s in range(3))
    token = store.state_token()
    assert store.rollback("0") == v2 and store.current_version("0") == v2
    assert store.state_token() != token
    token = store.state_token()
    assert store.rollback("0") == v1
    assert store.state_token() != token
    with pytest.raises(StoreError, match="no good version older"):
        store.rollback("0")
    assert store.rollback("0", v3) == v3 and store.load("0").version == v3
    with pytest.raises(StoreError, match=re.escape(v1)):  # the message lists what exists
        store.rollback("0", "20200101T000000.000000Z-abcdef")
    with pytest.raises(StoreError, match="invalid model version"):
        store.rollback("0", "../../etc")


def test_state_token_changes_on_publish_only_when_pointer_changes(store: ModelStore) -> None:
    assert store.state_token() == ""
    store.publish("0", factors_model())
    first = store.state_token()
    assert first and store.state_token() == first  # stable while nothing changes
    store.publish("5", factors_model())
    assert store.state_token() != first


def test_truncated_array_is_refused_and_load_falls_back(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    good = store.publish("0", factors_model(0))
    bad = store.publish("0", factors_model(1))
    path = store.root / "0" / bad / "item_factors.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptVersionError, match=r"item_factors\.npy: size is 100 bytes"):
        store.load("0", bad)
    with caplog.at_level(logging.WARNING, logger="ml_service.store"):
        loaded = store.load("0")
    assert loaded.version == good
    assert bad in caplog.text and "item_factors.npy" in caplog.text
    info = {i.version: i for i in store.versions("0")}
    assert not info[bad].ok and "item_factors.npy" in info[bad].error and info[good].ok
    # the corrupt version is not a rollback target either
    store.rollback("0", good)
    with pytest.raises(CorruptVersionError, match="item_factors.npy"):
        store.rollback("0", bad)


def test_garbage_meta_is_refused_and_load_falls_back(store: ModelStore) -> None:
    good = store.publish("0", factors_model(0))
    bad = store.publish("0", factors_model(1))
    (store.root / "0" / bad / "meta.json").write_bytes(b"\x00garbage{")
    with pytest.raises(CorruptVersionError, match=r"meta\.json: not valid JSON"):
        store.load("0", bad)
    assert store.load("0").version == good


def test_changed_content_of_same_size_fails_the_hash(store: ModelStore) -> None:
    version = store.publish("0", factors_model(0))
    path = store.root / "0" / version / "popularity.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptVersionError, match=r"popularity\.npy: SHA-256 differs"):
        store.load("0", version)
    store.load("0", version, verify_hashes=False)  # sizes, dtypes and shapes still agree


def test_no_good_version_raises_naming_each(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    (store.root / "0" / v1 / "user_ids.json").unlink()
    with pytest.raises(StoreError, match=rf"{v1}: user_ids\.json: the file is missing"):
        store.load("0")
    with pytest.raises(StoreError, match="no model has been published for tenant 9"):
        store.load("9")


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
    import hashlib

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
    model.item_biases = np.zeros(3, np.float32)
    with pytest.raises(StoreError, match=r"item_biases has shape \(3,\), expected \(7,\)"):
        store.publish("0", model)
    model = factors_model()
    model.popularity = np.array([object()] * 7, dtype=object)
    with pytest.raises(StoreError, match="object arrays cannot be stored"):
        store.publish("0", model)
    model = factors_model()
    model.item_ids = [1, 2, 3, 4, 5, 6, 7]  # type: ignore[list-item]
    with pytest.raises(StoreError, match=r"item_ids\[0\] is 1"):
        store.publish("0", model)
    assert store.versions("0") == [] and not [p for p in (store.root / "0").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("tenant", ["../x", "a/b", "..", "", ".hidden", "x" * 65, "0\n"])
def test_tenant_names_cannot_escape_the_root(store: ModelStore, tenant: str) -> None:
    with pytest.raises(StoreError, match="invalid tenant id"):
        store.publish(tenant, factors_model())
    with pytest.raises(StoreError, match="invalid tenant id"):
        store.load(tenant)


def test_tmp_leftovers_are_ignored_then_cleaned(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    leftover = store.root / "0" / ".tmp-20991231T000000.000000Z-aaaaaa"
    leftover.mkdir()
    (leftover / "user_factors.npy").write_bytes(b"half")
    (store.root / "0" / ".del-20000101T000000.000000Z-bbbbbb").mkdir()
    assert [i.version for i in store.versions("0")] == [v1]
    assert store.load("0").version == v1
    removed = store.prune("0")
    assert str(leftover) in removed and not leftover.exists()
    assert [p.name for p in (store.root / "0").iterdir() if p.name.startswith(".") and p.is_dir()] == []
    leftover.mkdir()
    v2 = store.publish("0", factors_model(1))
    assert not leftover.exists() and v2 > v1  # a later version despite the far-future leftover name


def test_status_round_trip(store: ModelStore) -> None:
    assert store.read_status() == {}
    statuses = {"0": {"state": "trained", "msg": "success"}, "3": {"state": "failed", "msg": "user_data_3.csv, line 4: ..."}}
    store.write_status(statuses)
    assert store.read_status() == statuses
    assert not list(store.root.glob("*.tmp"))
    (store.root / "status.json").write_text("{broken")
    assert store.read_status() == {}


def test_sigkill_during_publish_leaves_a_good_current_version(tmp_path: Path) -> None:
    root = tmp_path / "recommender"
    store = ModelStore(root, keep_versions=2)
    first = store.publish("0", factors_model(0))
    helper = Path(__file__).with_name("crash_helper.py")
    rng = random.Random(1234)
    seen_versions = {first}
    for _ in range(4):
        process = subprocess.Popen([sys.executable, str(helper), str(root), "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
            try:
                process.wait(timeout=rng.uniform(0.05, 0.8))  # the helper publishes until killed
            except subprocess.TimeoutExpired:
                pass
            assert process.returncode is None, "the helper stopped on its own"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        loaded = store.load("0")  # never raises: the current version is complete
        assert loaded.version == store.current_version("0")
        loaded.model.validate()
        for name in os.listdir(root / "0"):
            if not name.startswith(".") and name not in (CURRENT_FILE, "CURRENT.tmp"):
                store.load("0", name)  # every visible version folder is complete and verified
                seen_versions.add(name)
    assert len(seen_versions) > 1, "the helper never completed a publish: the test proved nothing"


def test_models_command_outputs(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    v2 = store.publish("0", factors_model(1))
    store.write_status({"0": {"state": "trained", "msg": "success"}})
    out, err = io.StringIO(), io.StringIO()
    assert models_command(store, "list", None, None, out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["TENANT", "CURRENT", "VERSION"]
    assert lines[1].split()[:3] == ["0", v2, "mf"] and "0.2500" in lines[1] and "trained" in lines[1]
    out = io.StringIO()
    assert models_command(store, "show", "0", None, out, err) == 0
    shown = json.loads(out.getvalue())
    assert shown["version"] == v2 and shown["is_current"] and shown["meta"]["algorithm"] == "mf"
    out = io.StringIO()
    assert models_command(store, "rollback", "0", None, out, err) == 0
    assert out.getvalue() == f"tenant 0: current version is now {v1} (was {v2})\n"
    out = io.StringIO()
    assert models_command(store, "list", "0", None, out, err) == 0
    assert [line.split()[:2] for line in out.getvalue().splitlines()[1:]] == [[v2, "mf"], ["*", v1]]
    out = io.StringIO()
    assert models_command(store, "prune", None, None, out, err) == 0 and "0 folder(s) removed" in out.getvalue()
    assert models_command(store, "show", "../x", None, out, err) == 1 and "invalid tenant id" in err.getvalue()
    assert models_command(store, "frobnicate", None, None, out, err) == 1 and "unknown models action" in err.getvalue()
