"""benchmarks/ceiling.py: the rebuilt hidden world matches a generated export, and the oracle scores follow it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import ceiling  # noqa: E402

from ml_service.data.load import load_tenant  # noqa: E402
from ml_service.demo.generate import COURSE, generate_export  # noqa: E402
from ml_service.models.base import score_users  # noqa: E402
from ml_service.source.folder import FolderSource  # noqa: E402
from ml_service.training.split import holdout_split  # noqa: E402

SIZE = {"users": 1500, "items": 400, "interactions": 12_000}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate_export(out, seed=3, tenants=0, **SIZE)
    return out


def _load(folder: Path):  # type: ignore[no-untyped-def]
    return load_tenant(FolderSource(folder).fetch().files("0"))


def test_rebuilt_world_matches_the_export(export: Path) -> None:
    data = _load(export)
    hidden = ceiling.rebuild(3, SIZE["users"], SIZE["items"], SIZE["interactions"])
    user_map, item_map = ceiling.match_tenant(hidden, data)
    assert np.array_equal(hidden.world.user_ids[user_map].astype(str), np.array(data.users.ids))


def test_a_world_of_another_seed_is_rejected(export: Path) -> None:
    data = _load(export)
    other = ceiling.rebuild(4, SIZE["users"], SIZE["items"], SIZE["interactions"])
    with pytest.raises(SystemExit, match="tenant users differ"):
        ceiling.match_tenant(other, data)


def test_an_export_with_one_rating_changed_is_rejected(export: Path, tmp_path: Path) -> None:
    for file in export.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    lines = (tmp_path / "user_interactions_0.csv").read_text().splitlines(keepends=True)
    user, item, rating, timestamp = lines[5].rstrip("\n").split(",")
    lines[5] = f"{user},{item},{1 - int(rating)},{timestamp}\n"
    (tmp_path / "user_interactions_0.csv").write_text("".join(lines))
    hidden = ceiling.rebuild(3, SIZE["users"], SIZE["items"], SIZE["interactions"])
    with pytest.raises(SystemExit, match="rebuilt interactions"):
        ceiling.match_tenant(hidden, _load(tmp_path))


def test_oracle_model_scores_are_draw_probability_times_rating_probability(export: Path) -> None:
    data = _load(export)
    hidden = ceiling.rebuild(3, SIZE["users"], SIZE["items"], SIZE["interactions"])
    user_map, item_map = ceiling.match_tenant(hidden, data)
    split = holdout_split(data, 0.2, seed=1, protocol="random")
    world = hidden.world
    model = ceiling.factor_model(
        "oracle", data, split, ceiling.user_side(world.preference[user_map], world), ceiling.item_side(world)[item_map]
    )
    users = np.array([0, 7, 123])
    scores = score_users(model, users)
    total = world.popularity.sum()
    for row, user in enumerate(users):
        u = user_map[user]
        pref = world.preference[u].astype(np.float64)
        for item in (0, 50, 399):
            i = item_map[item]
            t = world.item_topic[i]
            in_topic = world.popularity[world.item_topic == t].sum()
            draw = pref[t] * 0.8 * world.popularity[i] / in_topic + 0.2 * world.popularity[i] / total
            rating = 1.0 if world.item_type[i] == COURSE else 0.1 + 0.7 * pref[t] / pref.max()
            assert scores[row, item] == pytest.approx(draw * rating * total, rel=1e-4)
