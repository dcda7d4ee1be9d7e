"""The legacy batch on a model with a newer item type (spec §11 item 16): i2u lists it, i2i keeps it in its family."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml_service.batch import I2I_HEADER, I2U_HEADER, write_outputs
from ml_service.data.tenant import ITEM_TYPES, id_prefix
from ml_service.ranking import EXCLUDE, rank_user
from tests.test_batch import I2I_LINE, I2U_LINE, model_with_every_type, parse

PROGRAM = "totara_program"


def _model_with_programs():  # type: ignore[no-untyped-def]
    model = model_with_every_type(n_items=48)
    types = model.item_types.copy()
    types[40:] = 5
    model.item_types = types
    model.type_names = (*ITEM_TYPES, PROGRAM)
    model.item_ids = [f"{model.type_names[t]}{100 + i}" for i, t in enumerate(types.tolist())]
    return model


def test_i2u_and_i2i_use_the_models_own_types(tmp_path: Path) -> None:
    model = _model_with_programs()
    write_outputs(tmp_path, "0", model, 3, 4)
    i2u = parse(tmp_path / "i2u_0.csv", I2U_LINE, I2U_HEADER)
    for user_index, user in enumerate(model.user_ids):
        programs = [iid for uid, iid, _ in i2u if uid == user and iid.startswith(PROGRAM)]
        assert programs == [model.item_ids[i] for i, _ in rank_user(model, user_index, 5, 3, seen_policy=EXCLUDE)]
    assert any(iid.startswith(PROGRAM) for _, iid, _ in i2u)
    i2i = parse(tmp_path / "i2i_0.csv", I2I_LINE, I2I_HEADER)
    program_targets = {a for a, _, _ in i2i if a.startswith(PROGRAM)}
    assert len(program_targets) == int(np.count_nonzero(model.item_types == 5))
    for target, similar, _ in i2i:
        assert (id_prefix(target) == PROGRAM) == (id_prefix(similar) == PROGRAM)
