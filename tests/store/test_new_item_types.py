"""A model with newer item types (spec §11 item 16) round-trips through the store; older versions load as before."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ml_service.data.tenant import ITEM_TYPES
from ml_service.store import ModelStore, StoreError
from tests.store.support import assert_same_model, factors_model

LEGACY = Path(__file__).parent / "fixtures" / "legacy_store"
NEWER = ("totara_certification", "totara_program")


def newer_types_model():  # type: ignore[no-untyped-def]
    model = factors_model(n_items=9)
    model.type_names = ITEM_TYPES + NEWER
    model.item_types = np.array([0, 1, 2, 3, 4, 5, 6, 6, 5], np.int8)
    model.item_ids = [f"{ITEM_TYPES[t] if t < 5 else NEWER[t - 5]}{i}" for i, t in enumerate(model.item_types.tolist())]
    return model


def test_type_names_round_trip_through_the_store(store: ModelStore) -> None:
    model = newer_types_model()
    version = store.publish("0", model)
    loaded = store.load("0", verify_hashes=True)
    assert loaded.version == version and loaded.model.type_names == ITEM_TYPES + NEWER
    assert loaded.meta["item_type_names"] == list(ITEM_TYPES + NEWER)
    assert_same_model(model, loaded.model)


def test_publish_checks_type_codes_against_the_models_own_type_names(store: ModelStore) -> None:
    model = newer_types_model()
    model.item_types = model.item_types.copy()
    model.item_types[3] = 7  # two newer names: codes 0..6
    with pytest.raises(StoreError, match=r"model.item_types\[3\] is 7, expected a code in 0..6 .*totara_program\); 1 item"):
        store.publish("0", model)
    five = dataclasses.replace(newer_types_model(), type_names=ITEM_TYPES)
    with pytest.raises(StoreError, match=r"model.item_types\[5\] is 5, expected a code in 0..4"):
        store.publish("0", five)
    bad_names = dataclasses.replace(newer_types_model(), type_names=(*ITEM_TYPES, "totara_program", "totara_program"))
    with pytest.raises(StoreError, match="type names repeat"):
        store.publish("0", bad_names)
    assert store.versions("0") == []


def test_a_version_without_type_names_loads_with_the_five_types(store: ModelStore, tmp_path: Path) -> None:
    shutil.copytree(LEGACY, tmp_path / "legacy")
    legacy = ModelStore(tmp_path / "legacy" / "recommender")
    loaded = legacy.load("0", verify_hashes=True)
    assert "item_type_names" not in loaded.meta and loaded.model.type_names == ITEM_TYPES
    # a current version whose meta.json lacks the key (as every version before newer types) too
    store.publish("0", factors_model())
    folder = store.root / "0" / str(store.current_version("0"))
    meta = json.loads((folder / "meta.json").read_text())
    del meta["item_type_names"]
    (folder / "meta.json").write_text(json.dumps(meta))
    assert store.load("0", verify_hashes=True).model.type_names == ITEM_TYPES


def test_garbage_type_names_make_a_version_unusable(store: ModelStore) -> None:
    store.publish("0", newer_types_model())
    folder = store.root / "0" / str(store.current_version("0"))
    meta = json.loads((folder / "meta.json").read_text())
    for garbage, problem in (("totara_program", "not a list of strings"), (["engage_article"], "must start with")):
        meta["item_type_names"] = garbage
        (folder / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(StoreError, match=f"meta.json: .*{problem}"):
            store.load("0")
