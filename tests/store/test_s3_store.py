"""The store on S3 (moto's real HTTP S3 API): same layout and guarantees as a folder, partial versions, the locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from ml_service.config import ConfigError, Settings
from ml_service.store import CorruptVersionError, ModelStore, RunLock, RunLockBusy, StoreError
from ml_service.store import status as status_files
from ml_service.store.s3 import FsspecBackend, StoreUnavailableError
from tests.store.s3_support import BUCKET, CREDENTIALS, S3, moto_s3
from tests.store.support import assert_same_model, factors_model, item_item_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


@pytest.fixture
def store(s3: S3, tmp_path: Path, request: pytest.FixtureRequest) -> ModelStore:
    return s3.store(tmp_path / "cache", prefix=request.node.name[:60], keep_versions=5)


def _keys(store: ModelStore) -> list[str]:
    backend = store.backend
    assert isinstance(backend, FsspecBackend)
    return sorted(name[len(backend.base) + 1:] for name in backend.fs.find(backend.base))


def test_publish_load_versions_status_round_trip_in_the_folder_layout(store: ModelStore, tmp_path: Path) -> None:
    assert store.tenants() == [] and store.current_version("3") is None and store.state_token() == ""
    v1 = store.publish("3", factors_model(seed=1))
    v2 = store.publish("3", factors_model(seed=2))
    store.publish("0", item_item_model())
    assert store.tenants() == ["0", "3"] and store.current_version("3") == v2 and store.state_token()
    keys = _keys(store)
    assert {"STATE", "3/CURRENT", "0/CURRENT", f"3/{v1}/meta.json", f"3/{v2}/user_factors.npy"} <= set(keys)
    assert not any(k.endswith(".lock") for k in keys)  # the writer locks are gone after each publish
    infos = store.versions("3")
    assert [(i.version, i.is_current, i.ok) for i in infos] == [(v2, True, True), (v1, False, True)]
    listed = sum(spec["size"] for spec in store.read_meta("3", v2)["files"].values())
    assert infos[0].size_bytes == listed + len(store.backend.read(f"3/{v2}/meta.json"))  # as a folder's size
    loaded = store.load("3")
    assert loaded.version == v2 and isinstance(loaded.model.user_factors, np.memmap)  # mapped from the local cache
    assert_same_model(loaded.model, factors_model(seed=2))
    assert_same_model(store.load("0").model, item_item_model())
    store.write_status({"3": {"state": "trained", "msg": ""}, "4": {"state": "failed", "msg": "x"}})
    assert store.read_status()["4"] == {"state": "failed", "msg": "x"}
    # A second replica with an empty cache downloads the version and sees the same model.
    other = ModelStore(str(store.root), backend=FsspecBackend(str(store.root), tmp_path / "other", endpoint_url=store.backend.fs.endpoint_url))
    assert_same_model(other.load("3", v1).model, factors_model(seed=1))
    assert (tmp_path / "other" / "3" / v1 / "meta.json").is_file()


def test_rollback_pin_unpin_and_prune(s3: S3, tmp_path: Path) -> None:
    store = s3.store(tmp_path / "cache", prefix="pins", keep_versions=2)
    v1, v2 = store.publish("3", factors_model(seed=1)), store.publish("3", factors_model(seed=2))
    assert store.rollback("3") == v1 and store.current_version("3") == v1
    assert store.pin("3", v2) == v2 and store.current_version("3") == v2
    v3 = store.publish("3", factors_model(seed=3))
    assert store.current_version("3") == v2 and store.pinned_version("3") == v2  # stored, not served
    with pytest.raises(StoreError, match="pinned"):
        store.rollback("3")
    assert store.unpin("3") == v2 and store.pinned_version("3") is None
    v4 = store.publish("3", factors_model(seed=4))
    assert store.current_version("3") == v4
    assert [i.version for i in store.versions("3")] == [v4, v3]  # keep_versions=2: v1 and v2 pruned
    assert not any(k.startswith((f"3/{v1}", f"3/{v2}")) for k in _keys(store))
    assert store.delete_tenant("3") and store.tenants() == [] and store.current_version("3") is None


def test_a_corrupt_object_is_refused_by_its_hash_and_load_falls_back(store: ModelStore, tmp_path: Path) -> None:
    v1, v2 = store.publish("3", factors_model(seed=1)), store.publish("3", factors_model(seed=2))
    backend = store.backend
    key = f"3/{v2}/user_biases.npy"
    raw = bytearray(backend.read(key))
    raw[-1] ^= 0xFF  # same size, other content: only SHA-256 sees it
    backend.write(key, bytes(raw))
    backend.forget_cached("3", v2)
    with pytest.raises(CorruptVersionError, match="SHA-256"):
        store.load("3", v2)
    assert store.load("3").version == v1  # the newest good older version


def test_a_reader_never_sees_a_version_that_is_not_complete(store: ModelStore, s3: S3, tmp_path: Path) -> None:
    old = store.publish("3", factors_model(seed=1))
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store.s3_publish_helper", str(store.root), s3.endpoint, str(tmp_path / "child")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = []
        for line in child.stdout:  # type: ignore[union-attr]
            seen.append(line)
            # every uploaded file is visible at once, yet the version is not: readers still get the old one
            assert [i.version for i in store.versions("3")] == [old] and store.current_version("3") == old
            assert store.load("3").version == old
            if len([s for s in seen if s.startswith("uploaded")]) == 4:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(30)
    partial = {k.split("/")[1] for k in _keys(store) if k.startswith("3/") and k.count("/") == 2} - {old}
    assert len(partial) == 1, "the killed publish should have left objects of its version behind"
    assert f"3/{partial.pop()}/meta.json" not in _keys(store)
    assert [i.version for i in store.versions("3")] == [old] and store.load("3").version == old
    # The next publish takes over the dead writer's tenant lock, removes the leftovers and succeeds.
    new = store.publish("3", factors_model(seed=2))
    assert store.current_version("3") == new and {i.version for i in store.versions("3")} == {old, new}
    assert {k.split("/")[1] for k in _keys(store) if k.count("/") == 2} == {old, new}


def test_the_run_lock_on_s3_is_exclusive_and_a_dead_holder_is_taken_over(store: ModelStore) -> None:
    backend = store.backend
    first = RunLock(backend, stale_after_s=600.0, command="first")
    with first.held():
        with pytest.raises(RunLockBusy, match="first"):
            RunLock(backend, stale_after_s=600.0).acquire()
    assert first.holder() is None
    # A holder on this host whose process is gone: taken over with a conditional replace.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    import socket

    backend.write("run.lock", json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started_at": 1.0, "token": "t"}).encode())
    with RunLock(backend, stale_after_s=600.0, command="second").held() as lock:
        assert lock.holder() is not None and lock.holder().command == "second"  # type: ignore[union-attr]


def test_conditional_writes_let_exactly_one_writer_win(store: ModelStore) -> None:
    backend = store.backend
    assert backend.create("x.lock", b"a") is True
    assert backend.create("x.lock", b"b") is False and backend.read("x.lock") == b"a"
    stamp = backend.stamp("x.lock")
    assert stamp is not None
    assert backend.replace_if("x.lock", b"c", stamp) is True
    assert backend.replace_if("x.lock", b"d", stamp) is False  # a second takeover of the same stale lock loses
    assert backend.read("x.lock") == b"c"


def test_an_unreachable_store_is_a_passing_error_not_a_verdict_on_the_version(s3: S3, tmp_path: Path) -> None:
    store = s3.store(tmp_path / "cache", prefix="outage", via_relay=True, timeout_s=1.0)
    version = store.publish("3", factors_model(seed=1))
    fresh = s3.store(tmp_path / "fresh", prefix="outage", via_relay=True, timeout_s=1.0)  # nothing cached yet
    s3.relay.cut()
    try:
        for call in (store.state_token, store.tenants, lambda: store.current_version("3"), lambda: fresh.load("3", version)):
            with pytest.raises(StoreUnavailableError, match="cannot be reached") as caught:
                call()
            assert caught.value.errno is not None  # serving retries it (load_failures.transient_cause)
        assert store.load("3", version).version == version  # a cached immutable version needs no store
    finally:
        s3.relay.restore()
    assert fresh.load("3").version == version


def test_settings_name_the_store() -> None:
    env = {"ML_STORE_URL": "s3://models/site/", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    settings = Settings.from_env(env, require_totara=False)
    assert settings.store_url == "s3://models/site" and settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert Settings.from_env({**env, "ML_S3_ENDPOINT_URL": "http://minio:9000"}, require_totara=False).s3_endpoint_url == "http://minio:9000"
    store = ModelStore.from_settings(settings)
    assert store.root == "s3://models/site" and isinstance(store.backend, FsspecBackend)
    assert ModelStore.from_settings(Settings.from_env({}, require_totara=False)).root == Path("data/models/recommender")
    for bad in ("gs://bucket/x", "s3://", "ftp://host/x"):
        with pytest.raises(ConfigError, match="ML_STORE_URL"):
            Settings.from_env({"ML_STORE_URL": bad}, require_totara=False)
    with pytest.raises(ConfigError, match="ML_S3_ENDPOINT_URL"):
        Settings.from_env({"ML_S3_ENDPOINT_URL": "minio:9000"}, require_totara=False)


def test_status_files_accept_the_backend(store: ModelStore) -> None:
    status_files.write_status(store.backend, {"0": {"state": "trained"}}, absent_runs={"5": 2})
    assert status_files.read_absent_runs(store.backend) == {"5": 2}
    assert json.loads(store.backend.read("status.json"))["tenants"] == {"0": {"state": "trained"}}
    assert BUCKET in str(store.root)


def test_train_and_the_models_command_work_on_an_s3_store(s3: S3, tmp_path: Path) -> None:
    """`ml-service train` (run lock, anytime publish, status, retention) and `models list|pin` through ML_STORE_URL."""
    from ml_service.demo.run import SAMPLE_DIR

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_", "AWS_"))}
    env.update({**s3.env("cli", via_relay=False), "ML_MODELS_DIR": str(tmp_path / "models"), "ML_LOGS_DIR": str(tmp_path / "logs"),
                "ML_NUM_THREADS": "1"})
    cli = [sys.executable, "-m", "ml_service.cli"]
    trained = subprocess.run([*cli, "train", "--source", str(SAMPLE_DIR), "--algorithm", "popular"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-2000:]
    store = s3.store(tmp_path / "cache", prefix="cli")
    tenants = store.tenants()
    assert tenants and all(store.current_version(t) for t in tenants)
    assert set(store.read_status()) >= set(tenants) and store.backend.stamp("run.lock") is None  # released
    assert not (tmp_path / "models" / "recommender").exists() or not any((tmp_path / "models" / "recommender").glob("*/CURRENT"))
    listed = subprocess.run([*cli, "models", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and all(t in listed.stdout for t in tenants), listed.stdout + listed.stderr
    version = store.current_version(tenants[0])
    pinned = subprocess.run([*cli, "models", "pin", tenants[0]], env=env, capture_output=True, text=True, timeout=120)
    assert pinned.returncode == 0, pinned.stderr
    assert store.pinned_version(tenants[0]) == version
    pointers = store.current_versions(tenants + ["99"])
    assert pointers == {**{t: store.current_version(t) for t in tenants}, "99": None}
    stamp = store.tenant_stamp(tenants[0])
    store.publish(tenants[0], factors_model(seed=5))
    assert store.tenant_stamp(tenants[0]) != stamp  # the dashboard re-reads the versions after a publish


def test_the_dashboard_sparklines_read_an_s3_store_through_its_listing(store: ModelStore) -> None:
    from ml_service.api.admin.history import StoreNdcgHistory, ndcg_history

    now = [0.0]
    history = ndcg_history(store)
    assert isinstance(history, StoreNdcgHistory)
    history.clock = lambda: now[0]
    for score in (0.1, 0.2):
        model = factors_model(seed=int(score * 10))
        model.metrics = {"ndcg@10": score}
        store.publish("4", model)
    assert history.of("4") == [0.1, 0.2]  # oldest first, as on a local store
    model = factors_model(seed=3)
    model.metrics = {"ndcg@10": 0.3}
    store.publish("4", model)
    assert history.of("4") == [0.1, 0.2]  # listed at most every ttl_s
    now[0] += history.ttl_s
    assert history.of("4") == [0.1, 0.2, 0.3]
