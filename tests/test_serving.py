"""TenantIndex lookups and ranking, and Recommender refresh / hot swap over a real ModelStore in tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ml_service.models.base import model_from_arrays
from ml_service.data.tenant import TYPE_INDEX
from ml_service.serving import Recommender, TenantIndex, wire_id
from ml_service.store import ModelStore
from tests.api.support import ITEMS, expected_similar, expected_user_items, make_model


@pytest.fixture
def index() -> TenantIndex:
    return TenantIndex("0", "v1", make_model(seed=0), {"created_at": "2026-01-01T00:00:00Z"})


def _ids(pairs: list[tuple[str, float]]) -> list[str]:
    return [item_id for item_id, _ in pairs]


def test_wire_id_removes_every_type_name() -> None:
    assert wire_id("engage_article123") == "123"
    assert wire_id("engage_microlearning7") == "7"
    assert wire_id("container_course_container_course9") == "_9"
    assert wire_id("totara_playlist") == ""


def test_lookups_built_once(index: TenantIndex) -> None:
    assert index.n_users == 5 and index.n_items == len(ITEMS)
    assert [ITEMS[i] for i in index.type_items[TYPE_INDEX["engage_article"]]] == ["engage_article10", "engage_article11"]
    family = [ITEMS[i] for i in index.family_items[TYPE_INDEX["engage_article"]]]
    assert family == ["engage_article10", "engage_article11", "engage_microlearning12", "engage_microlearning13"]
    assert index.wire_ids[:2] == ["1", "2"]


@pytest.mark.parametrize("policy", ["exclude", "demote"])
@pytest.mark.parametrize("user", ["1", "2", "3", "5", "404"])
def test_user_items_match_the_oracle(index: TenantIndex, user: str, policy: str) -> None:
    for item_type, type_index in TYPE_INDEX.items():
        got = index.user_items(user, item_type, 10, policy)
        want = expected_user_items(index.model, user, type_index, 10, seen=policy)
        assert _ids(got) == _ids(want)
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_user_ids_with_leading_zeros_find_the_user(index: TenantIndex) -> None:
    assert index.user_items("002", "container_course", 3) == index.user_items("2", "container_course", 3)


def test_unknown_type_raises(index: TenantIndex) -> None:
    with pytest.raises(KeyError):
        index.user_items("1", "engage_banana", 3)


def test_similar_items(index: TenantIndex) -> None:
    for item in ITEMS:
        got = index.similar_items(item, 10)
        assert got is not None
        assert _ids(got) == _ids(expected_similar(index.model, item, 10))
        assert item not in _ids(got)
    assert index.similar_items("engage_article12", 2) == index.similar_items("engage_microlearning12", 2)
    assert index.similar_items("engage_article99", 2) is None
    assert index.similar_items("container_course99", 2) is None


def test_refresh_loads_swaps_and_keeps_unchanged_tenants(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender")
    recommender = Recommender(store)
    assert recommender.refresh() is False and recommender.state.indexes == {}
    assert not recommender.ready

    store.publish("0", make_model(seed=0))
    store.publish("5", make_model(seed=1))
    assert recommender.refresh() is True
    first = recommender.state
    assert set(first.indexes) == {"0", "5"} and recommender.ready
    assert recommender.refresh() is False and recommender.state is first  # nothing changed: nothing rebuilt

    store.publish("5", make_model(seed=2))
    assert recommender.refresh() is True
    second = recommender.state
    assert second is not first
    assert second.indexes["0"] is first.indexes["0"]  # only the changed tenant was rebuilt
    assert second.indexes["5"].version == store.current_version("5") != first.indexes["5"].version


def test_status_changes_are_seen_without_a_publish(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender")
    recommender = Recommender(store)
    recommender.refresh()
    assert not recommender.ready and not recommender.knows_tenant("3")
    store.write_status({"3": {"state": "untrained", "msg": "too small"}})
    assert recommender.refresh() is True
    assert recommender.ready and recommender.knows_tenant("3") and recommender.index("3") is None


def test_broken_version_keeps_the_old_index(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ModelStore(tmp_path / "recommender")
    store.publish("0", make_model(seed=0))
    recommender = Recommender(store)
    recommender.refresh()
    old = recommender.index("0")
    assert old is not None
    bad_version = store.publish("0", make_model(seed=3))
    (store.root / "0" / bad_version / "item_factors.npy").write_bytes(b"not an array")
    with caplog.at_level(logging.ERROR, logger="ml_service.serving"):
        recommender.refresh()
    assert recommender.index("0") is old
    assert any(bad_version in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ml_service.serving"):
        recommender.refresh()  # the same broken version is not retried (and not logged) on every poll
    assert not caplog.records and recommender.index("0") is old
    store.publish("0", make_model(seed=4))
    recommender.refresh()
    assert recommender.index("0") is not old


def test_cold_start_with_a_corrupt_current_version_serves_the_last_good_one(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "recommender")
    good = store.publish("0", make_model(seed=0))
    bad = store.publish("0", make_model(seed=3))
    (store.root / "0" / bad / "item_factors.npy").write_bytes(b"not an array")
    recommender = Recommender(store)  # a server starting after the corruption
    recommender.refresh()
    index = recommender.index("0")
    assert index is not None and index.version == good


def test_polling_thread_picks_up_a_publish(tmp_path: Path) -> None:
    import time

    store = ModelStore(tmp_path / "recommender")
    recommender = Recommender(store)
    recommender.start_polling(0.02)
    try:
        store.publish("0", make_model(seed=0))
        deadline = time.monotonic() + 10
        while recommender.index("0") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recommender.index("0") is not None
    finally:
        recommender.stop_polling()


def test_precomputed_blocks_are_the_model_rows(index: TenantIndex) -> None:
    model = index.model
    for t, rows in enumerate(index.type_items):
        assert np.array_equal(index.type_biases[t], model.item_biases[rows])
        assert np.array_equal(index.type_popularity[t], model.popularity[rows])
    for family, rows in index.family_items.items():
        for block, vectors in ((index.family_vectors[family], model.similarity_vectors), (index.family_content[family], model.content_vectors)):
            assert block is not None and block.flags.c_contiguous and block.dtype == np.float32
            assert np.array_equal(block, vectors[rows])
    assert index.json_wire_ids[:2] == ['"1"', '"2"']


def test_index_answers_equal_the_plain_ranking_functions(index: TenantIndex) -> None:
    """The index's blocks change nothing: the same lists as rank_user / rank_similar given only the model."""
    from ml_service.ranking import rank_similar, rank_user

    model = index.model
    for item, item_id in enumerate(model.item_ids):
        assert index.rank_similar(item_id, 10) == rank_similar(model, item, 10)
    for user_id in [*model.user_ids, "404"]:
        user = index.find_user(user_id)
        for item_type, t in TYPE_INDEX.items():
            for policy in ("exclude", "demote"):
                got = index.rank_user(user_id, item_type, 10, policy)
                want = rank_user(model, user, t, 10, seen_policy=policy)
                assert [i for i, _ in got] == [i for i, _ in want]
                assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)


def test_index_without_optional_parts(index: TenantIndex) -> None:
    """A model without biases, popularity, content vectors: the index builds and still ranks."""
    full = make_model(seed=1)  # what a version stored without them loads as: zero biases and popularity
    arrays = {k: v for k, v in full.arrays().items() if k not in ("item_biases", "user_biases", "popularity", "content_vectors")}
    model = model_from_arrays(full.algorithm, full.user_ids, full.item_ids, **arrays)
    bare = TenantIndex("0", "v", model, {})
    assert not bare.type_biases[0].any() and bare.family_content[0] is None
    assert [s for _, s in bare.user_items("404", "container_course", 3)] == [0.0, 0.0, 0.0]  # cold, no popularity
    assert _ids(bare.similar_items("engage_microlearning13", 3) or []) != []  # cold item falls back to model vectors
