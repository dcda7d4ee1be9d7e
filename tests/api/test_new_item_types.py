"""A site on a newer Totara (spec §11 item 16): programs in item_data are trained, stored and served as their own type."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest

from ml_service.config import Settings
from ml_service.data.csvio import read_header_and_rows, write_php_csv
from ml_service.data.tenant import ITEM_TYPES
from ml_service.demo.generate import generate_export
from ml_service.source.folder import FolderSource
from ml_service.store import ModelStore
from ml_service.training.pipeline import run_training
from tests.api.support import assert_wire_items, expected_similar, expected_user_items, signed

PROGRAM = "totara_program"
OFFSET = 900_000  # program numbers: far above every generated id, so a wire id tells its type


def _with_programs(folder: Path) -> None:
    """Every other course of tenant 0 becomes a program: a `totara_program` column, ids and interactions renamed."""
    header, rows = read_header_and_rows(folder / "item_data_0.csv")
    assert header is not None
    course, document = header.index("container_course"), header.index("document")
    renamed: dict[str, str] = {}
    out = []
    for k, (_, row) in enumerate(rows):
        is_program = row[course] == "1" and k % 2 == 0
        if is_program:
            renamed[row[0]] = f"{PROGRAM}{OFFSET + int(row[0].removeprefix('container_course'))}"
            row = [renamed[row[0]], *row[1:course], "0", *row[course + 1:]]
        out.append([*row[:document], "1" if is_program else "0", *row[document:]])
    write_php_csv(folder / "item_data_0.csv", [*header[:document], PROGRAM, *header[document:]], out)
    header, rows = read_header_and_rows(folder / "user_interactions_0.csv")
    assert header is not None
    at = header.index("item_id")
    write_php_csv(
        folder / "user_interactions_0.csv", header,
        [[renamed.get(v, v) if i == at else v for i, v in enumerate(row)] for _, row in rows],
    )
    assert len(renamed) >= 5


@pytest.fixture
def trained(tmp_path: Path, settings: Settings) -> ModelStore:
    export = tmp_path / "export"
    generate_export(export, seed=5, users=120, items=80, interactions=2400, tenants=0)
    _with_programs(export)
    settings = settings.with_(algorithm="mf", num_threads=1)
    settings.ensure_dirs()
    store = ModelStore(settings.recommender_dir)
    result = run_training(settings, FolderSource(export), store)
    assert result.ok and [r.state for r in result.tenants] == ["trained"]
    return store


def test_programs_are_served_as_their_own_type_and_family(
    trained: ModelStore, settings: Settings, serve: Callable[..., str], client: httpx.Client
) -> None:
    model = trained.load("0").model
    assert model.type_names == (*ITEM_TYPES, PROGRAM)
    programs = np.flatnonzero(model.item_types == 5)
    assert programs.size >= 5 and all(model.item_ids[i].startswith(PROGRAM) for i in programs)
    assert PROGRAM in model.metrics["per_type"]  # the evaluation reports the newer type by its name
    url = serve(settings, trained)

    def get(path: str, **params: str) -> dict:
        response = client.get(url + path, params={"tenant": "0", "n_items": "4", **params}, headers=signed())
        assert response.status_code == 200
        return response.json()

    users = [u for u in model.user_ids[:10]] + ["424242"]  # known learners and one the model has never seen
    for user in users:
        body = get("/user-items", totara_user_id=user, item_type=PROGRAM)
        assert_wire_items(body, expected_user_items(model, user, 5, 4))
        assert body["items"] and all(int(wire_id) >= OFFSET for wire_id, _ in body["items"])
        courses = get("/user-items", totara_user_id=user, item_type="container_course")
        assert_wire_items(courses, expected_user_items(model, user, 0, 4))
        assert all(int(wire_id) < OFFSET for wire_id, _ in courses["items"])
    target = model.item_ids[int(programs[0])]
    similar = get("/similar-items", totara_item_id=target)
    assert_wire_items(similar, expected_similar(model, target, 4))
    assert similar["items"] and all(int(wire_id) >= OFFSET for wire_id, _ in similar["items"])
    course = model.item_ids[int(np.flatnonzero(model.item_types == 0)[0])]
    assert all(int(wire_id) < OFFSET for wire_id, _ in get("/similar-items", totara_item_id=course)["items"])
    # a type neither known nor in this tenant's export is still the business error of spec §2.3
    unknown = get("/user-items", totara_user_id=model.user_ids[0], item_type="totara_certification")
    assert unknown == {"items": [], "message": "Bad request: no such item type is available", "success": False}
