"""ModelStore: publish and pointers, rollback, pruning, corruption fallback, atomic publish under SIGKILL."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ml_service.store import CURRENT_FILE, BadPointerError, CorruptVersionError, ModelStore, StoreError
from tests.store.support import factors_model, item_item_model


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


def test_no_good_version_raises_naming_each(store: ModelStore) -> None:
    v1 = store.publish("0", factors_model(0))
    (store.root / "0" / v1 / "user_ids.json").unlink()
    with pytest.raises(StoreError, match=rf"{v1}: user_ids\.json: the file is missing"):
        store.load("0")
    with pytest.raises(StoreError, match="no model has been published for tenant 9"):
        store.load("9")


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
            if not name.startswith(".") and name != CURRENT_FILE and not name.endswith(".tmp"):
                store.load("0", name)  # every visible version folder is complete and verified
                seen_versions.add(name)
    assert len(seen_versions) > 1, "the helper never completed a publish: the test proved nothing"


def test_pinned_tenant_keeps_serving_while_new_versions_are_stored(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender", keep_versions=2)
    v1, v2 = (store.publish("0", factors_model(s)) for s in range(2))
    assert store.pin("0", v1) == v1
    assert store.current_version("0") == v1 and store.pinned_version("0") == v1
    token = store.state_token()
    newer = [store.publish("0", factors_model(s)) for s in range(2, 6)]
    assert store.current_version("0") == v1 and store.load("0").version == v1  # the pointer did not move
    assert store.state_token() == token  # servers have nothing to reload
    # pruning keeps the 2 newest and the pinned (= current) one, never more
    assert [i.version for i in store.versions("0")] == [newer[-1], newer[-2], v1]
    assert [i.is_pinned for i in store.versions("0")] == [False, False, True]
    assert store.prune("0") == [] and store.current_version("0") == v1
    # rollback does not silently undo a pin
    with pytest.raises(StoreError, match=rf"tenant 0 is pinned to version {v1}: use `ml-service models pin 0 VERSION`"):
        store.rollback("0", newer[-1])
    # pinning another version serves it at once
    assert store.pin("0", newer[-2]) == newer[-2] and store.current_version("0") == newer[-2]
    assert store.state_token() != token
    assert store.unpin("0") == newer[-2] and store.pinned_version("0") is None
    assert store.current_version("0") == newer[-2]  # unpinning does not move the pointer ...
    latest = store.publish("0", factors_model(9))
    assert store.current_version("0") == latest  # ... the next publish does
    assert store.unpin("0") is None


def test_pin_refuses_unknown_or_corrupt_versions_and_defaults_to_current(store: ModelStore) -> None:
    v1, v2 = (store.publish("0", factors_model(s)) for s in range(2))
    (store.root / "0" / v1 / "item_ids.json").write_text("[]")
    with pytest.raises(CorruptVersionError, match="item_ids.json"):
        store.pin("0", v1)
    with pytest.raises(StoreError, match="has no model version 20200101T000000.000000Z-abcdef"):
        store.pin("0", "20200101T000000.000000Z-abcdef")
    assert store.pinned_version("0") is None
    assert store.pin("0") == v2 and store.pinned_version("0") == v2
    with pytest.raises(StoreError, match="no model has been published for tenant 4"):
        store.pin("4")


def test_a_failure_after_the_pointer_switch_does_not_fail_the_publish(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(tmp_path / "recommender", keep_versions=1)
    old = store.publish("0", factors_model(0))
    # a real obstacle for the prune: the name its rename needs is taken by a file (not a leftover folder)
    (store.root / "0" / f".del-{old}").write_text("in the way")
    with caplog.at_level(logging.ERROR, logger="ml_service.store"):
        new = store.publish("0", factors_model(1))
    assert store.current_version("0") == new and store.load("0").version == new
    assert "new version published, but pruning old versions failed" in caplog.text
    assert {i.version for i in store.versions("0")} == {new, old}  # pruned by a later run once the obstacle is gone


def test_concurrent_publishers_in_separate_processes_never_fail(tmp_path: Path) -> None:
    """Regression: STATE.tmp was one shared name, so one publisher's rename removed the other's file."""
    root = tmp_path / "recommender"
    script = (
        "import sys\n"
        "from ml_service.store import ModelStore\n"
        "from tests.store.support import factors_model\n"
        "store = ModelStore(sys.argv[1], keep_versions=2)\n"
        "model = factors_model(int(sys.argv[2]), n_users=3, n_items=3)\n"
        "for i in range(60):\n"
        "    store.publish(sys.argv[2], model)\n"
        "    store.write_status({sys.argv[2]: {'state': 'trained', 'run': i}})\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(root), str(n)], cwd=Path(__file__).parents[2],
                         stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=300)
        if process.returncode != 0:
            errors.append(err[-2000:])
    assert not errors, errors[0]
    assert store_tenants_all_current(ModelStore(root), ["0", "1", "2"])
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def store_tenants_all_current(store: ModelStore, tenants: list[str]) -> bool:
    return store.tenants() == tenants and all(store.load(t).version == store.current_version(t) for t in tenants)


def test_delete_tenant_removes_models_and_status(store: ModelStore) -> None:
    store.publish("0", factors_model(0))
    v = store.publish("5", factors_model(1))
    store.write_status({"0": {"state": "trained"}, "5": {"state": "trained"}})
    token = store.state_token()
    removed = store.delete_tenant("5")
    assert str(store.root / "5" / v) in removed and str(store.root / "5") in removed
    assert store.tenants() == ["0"] and not (store.root / "5").exists()
    assert set(store.read_status()) == {"0"} and store.state_token() != token
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".del-")] == []
    assert store.load("0")  # the others are untouched


def test_an_unreadable_pin_still_holds_the_pointer(store: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    v1 = store.publish("0", factors_model(0))
    (store.root / "0" / "PINNED").write_text("garbage")
    with caplog.at_level(logging.ERROR, logger="ml_service.store"):
        v2 = store.publish("0", factors_model(1))
    assert store.current_version("0") == v1 and v2 in [i.version for i in store.versions("0")]
    assert "PINNED holds 'garbage'" in caplog.text
    assert store.unpin("0") is None and store.publish("0", factors_model(2)) == store.current_version("0")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\xff\xfe\x00\x9c\x81", "not UTF-8 text"),
        (b"../0/20261202T000000.000000Z-abcdef\n", "which is not a version id"),
        (b"", "which is not a version id"),
        (None, "cannot be read"),  # CURRENT is a folder
    ],
    ids=["random bytes", "path traversal", "empty", "unreadable"],
)
def test_a_garbage_current_raises_bad_pointer_error_naming_the_file(store: ModelStore, content: bytes | None, problem: str) -> None:
    store.publish("3", item_item_model())
    current = store.root / "3" / CURRENT_FILE
    current.unlink()
    if content is None:
        current.mkdir()
    else:
        current.write_bytes(content)
    with pytest.raises(BadPointerError, match=problem) as raised:
        store.current_version("3")
    assert isinstance(raised.value, StoreError) and raised.value.tenant == "3" and raised.value.path == current
    assert str(current) in str(raised.value)
