"""Legacy batch (spec §9): output formats Totara's importer reads, ranking equal to serving, flags, small tenants."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import ml_service
from ml_service.models.base import with_arrays
from ml_service.models.base import model_from_arrays
from ml_service.batch import (
    I2I_HEADER,
    I2U_HEADER,
    batch_main,
    build_parser,
    i2u_lines,
    write_empty_outputs,
    write_outputs,
)
from ml_service.data.tenant import ITEM_TYPES, TYPE_FAMILY, item_type_of
from ml_service.models.base import FACTORS, TrainedModel
from ml_service.ranking import EXCLUDE, rank_similar, rank_user
from ml_service.ranking.select import top_k_rows as _top_rows

ITEM_ID = re.compile(r"^[a-z]+_[a-z]+\d+$")  # what import_recommendations.php splits into type and number
I2U_LINE = re.compile(r"^(\d+),([a-z]+_[a-z]+\d+),(-?\d+\.\d{12})$")
I2I_LINE = re.compile(r"^([a-z]+_[a-z]+\d+),([a-z]+_[a-z]+\d+),(-?\d+\.\d{12})$")
SAMPLE = Path(ml_service.__file__).parent / "demo" / "sample"


def model_with_every_type(seed: int = 0, n_users: int = 30, n_items: int = 40) -> TrainedModel:
    rng = np.random.default_rng(seed)
    types = (np.arange(n_items) % len(ITEM_TYPES)).astype(np.int8)
    positives = sp.csr_matrix((rng.random((n_users, n_items)) < 0.25).astype(np.float32))
    item_warm = np.ones(n_items, bool)
    item_warm[::7] = False  # cold items: similar items come from content vectors
    return model_from_arrays(
        algorithm="als",
        user_ids=[str(2 + u) for u in range(n_users)],
        item_ids=[f"{ITEM_TYPES[t]}{100 + i}" for i, t in enumerate(types)],
        item_types=types,
        kind=FACTORS,
        user_factors=rng.standard_normal((n_users, 6), dtype=np.float32),
        item_factors=rng.standard_normal((n_items, 6), dtype=np.float32),
        user_biases=rng.standard_normal(n_users, dtype=np.float32),
        item_biases=rng.standard_normal(n_items, dtype=np.float32),
        positives=positives,
        user_cold=np.arange(n_users) % 4 == 0,
        popularity=rng.random(n_items, dtype=np.float32),
        similarity_vectors=_unit(rng.standard_normal((n_items, 5), dtype=np.float32)),
        content_vectors=_unit(rng.standard_normal((n_items, 4), dtype=np.float32)),
        item_warm=item_warm,
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def parse(path: Path, pattern: re.Pattern[str], header: str) -> list[tuple[str, str, float]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert lines[0] == header
    rows = []
    for line in lines[1:]:
        match = pattern.match(line)
        assert match, f"{path.name}: {line!r} does not match {pattern.pattern}"
        rows.append((match.group(1), match.group(2), float(match.group(3))))
    return rows


def test_written_files_have_the_importers_format(tmp_path: Path) -> None:
    model = model_with_every_type()
    counts = write_outputs(tmp_path, "5", model, 3, 4, ["lang_en"], ["topic_x", "engage_article"])
    i2i = parse(tmp_path / "i2i_5.csv", I2I_LINE, I2I_HEADER)
    i2u = parse(tmp_path / "i2u_5.csv", I2U_LINE, I2U_HEADER)
    assert counts == (len(i2i), len(i2u)) and i2i and i2u
    for item_id in {row[0] for row in i2i} | {row[1] for row in i2i} | {row[1] for row in i2u}:
        assert ITEM_ID.match(item_id) and item_id.rstrip("0123456789") in ITEM_TYPES
    assert (tmp_path / "processed_user_data_5.txt").read_text() == '["lang_en"]'
    assert (tmp_path / "processed_item_data_5.txt").read_text() == '["topic_x", "engage_article"]'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "i2i_5.csv", "i2u_5.csv", "processed_item_data_5.txt", "processed_user_data_5.txt",
    ]  # no temporary files left behind


def test_i2u_is_rank_user_per_type_in_one_hot_order_without_seen_items(tmp_path: Path) -> None:
    model = model_with_every_type()
    write_outputs(tmp_path, "0", model, 3, 4)
    rows = parse(tmp_path / "i2u_0.csv", I2U_LINE, I2U_HEADER)
    expected = []
    for user, uid in enumerate(model.user_ids):
        for item_type in range(len(ITEM_TYPES)):
            for item, score in rank_user(model, user, item_type, 3, seen_policy=EXCLUDE):
                expected.append((uid, model.item_ids[item], score))
    assert [(u, i) for u, i, _ in rows] == [(u, i) for u, i, _ in expected]
    assert np.allclose([s for *_, s in rows], [s for *_, s in expected], atol=1e-6)
    # per user: types in ITEM_TYPES order, scores descending within a type, no positive (seen) item
    index = {uid: u for u, uid in enumerate(model.user_ids)}
    item_index = {iid: i for i, iid in enumerate(model.item_ids)}
    seen = model.positives.toarray() > 0
    assert seen.sum() > 0
    by_user: dict[str, list[tuple[int, float]]] = {}
    for uid, iid, score in rows:
        assert not seen[index[uid], item_index[iid]]
        by_user.setdefault(uid, []).append((item_type_of(iid), score))
    assert set(by_user) == set(model.user_ids)
    for ranked in by_user.values():
        assert [t for t, _ in ranked] == sorted(t for t, _ in ranked)
        for item_type in range(len(ITEM_TYPES)):
            scores = [s for t, s in ranked if t == item_type]
            assert scores == sorted(scores, reverse=True) and len(scores) <= 3


def _demoted_oracle(model: TrainedModel, user: int, item_type: int, n: int, factor: float) -> list[tuple[str, float]]:
    """Spec §9.5 / §11 item 14 spelled out: the user's positives of the type drop by factor x unseen score range."""
    candidates = [i for i in range(model.n_items) if model.item_types[i] == item_type]
    if model.user_cold[user]:
        scores = model.popularity.astype(np.float64)
    else:
        scores = model.item_factors.astype(np.float64) @ model.user_factors[user] + model.item_biases + model.user_biases[user]
    liked = set(model.positives[user].indices[model.positives[user].data > 0].tolist())
    unseen = [scores[i] for i in candidates if i not in liked]
    if unseen and len(unseen) < len(candidates):
        for i in candidates:
            if i in liked:
                scores[i] -= factor * (max(unseen) - min(unseen))
    ranked = sorted(candidates, key=lambda i: (-scores[i], i))[:n]
    return [(model.item_ids[i], float(scores[i])) for i in ranked]


def test_i2u_with_seen_policy_demote_demotes_by_0_3_of_the_range(tmp_path: Path) -> None:
    model = model_with_every_type()
    write_outputs(tmp_path, "0", model, 4, 4, seen_policy="demote")
    rows = parse(tmp_path / "i2u_0.csv", I2U_LINE, I2U_HEADER)
    expected = [
        (uid, item, score)
        for user, uid in enumerate(model.user_ids)
        for item_type in range(len(ITEM_TYPES))
        for item, score in _demoted_oracle(model, user, item_type, 4, 0.3)
    ]
    assert [(u, i) for u, i, _ in rows] == [(u, i) for u, i, _ in expected]
    assert np.allclose([s for *_, s in rows], [s for *_, s in expected], atol=1e-5)
    seen = {(model.user_ids[u], model.item_ids[i]) for u, i in zip(*model.positives.nonzero())}
    assert seen & {(u, i) for u, i, _ in rows}  # demoted, not excluded: some positives still make a top 4


def test_i2i_is_rank_similar_same_family_never_the_target(tmp_path: Path) -> None:
    model = model_with_every_type()
    write_outputs(tmp_path, "0", model, 3, 4)
    rows = parse(tmp_path / "i2i_0.csv", I2I_LINE, I2I_HEADER)
    expected = [
        (model.item_ids[item], model.item_ids[other], score)
        for item in range(model.n_items)
        for other, score in rank_similar(model, item, 4)
    ]
    assert [(a, b) for a, b, _ in rows] == [(a, b) for a, b, _ in expected]
    assert np.allclose([s for *_, s in rows], [s for *_, s in expected], atol=1e-6)
    for target, similar, _ in rows:
        assert target != similar
        assert TYPE_FAMILY[item_type_of(target)] == TYPE_FAMILY[item_type_of(similar)]
    # articles and microlearning are one family: an article gets microlearning neighbours too
    article_neighbours = {item_type_of(b) for a, b, _ in rows if item_type_of(a) == 2}
    assert article_neighbours == {2, 3}


def test_ties_go_to_the_lower_index_and_cold_users_get_popularity(tmp_path: Path) -> None:
    model = model_with_every_type()
    model = with_arrays(model, popularity=np.zeros(model.n_items, np.float32))  # every item equally popular
    model = with_arrays(model, user_cold=np.ones(model.n_users, bool))
    model = with_arrays(model, positives=sp.csr_matrix((model.n_users, model.n_items), dtype=np.float32))
    lines = "".join(i2u_lines(model, 2)).splitlines()[1:]
    first_user = [line.split(",")[1] for line in lines if line.startswith(model.user_ids[0] + ",")]
    lowest_two_per_type = [model.item_ids[i] for t in range(5) for i in np.flatnonzero(model.item_types == t)[:2]]
    assert first_user == lowest_two_per_type


def test_top_rows_matches_a_stable_sort_with_ties_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (60, 25)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    for n in (1, 3, 25, 40):
        cols, vals, counts = _top_rows(scores, n)
        for row in range(scores.shape[0]):
            expected = sorted((j for j in range(25) if scores[row, j] > -np.inf), key=lambda j: (-scores[row, j], j))[:n]
            assert cols[row, : counts[row]].tolist() == expected
            assert vals[row, : counts[row]].tolist() == scores[row, expected].tolist()


def test_ids_the_importer_cannot_split_are_left_out(tmp_path: Path) -> None:
    model = model_with_every_type()
    model.item_ids[0] = "container_course 100"  # a space: the importer's split would fail
    model.item_ids[1] = "engage_article101"  # prefix disagrees with the one-hot type (workspace)
    model.user_ids[0] = "guest"
    write_outputs(tmp_path, "0", model, 3, 4)
    i2u = parse(tmp_path / "i2u_0.csv", I2U_LINE, I2U_HEADER)  # the regex rejects any bad line
    i2i = parse(tmp_path / "i2i_0.csv", I2I_LINE, I2I_HEADER)
    written = {row[1] for row in i2u} | {row[0] for row in i2i} | {row[1] for row in i2i}
    assert "engage_article101" not in written and "guest" not in {row[0] for row in i2u}


def test_small_tenant_outputs_are_header_only_without_newline(tmp_path: Path) -> None:
    write_empty_outputs(tmp_path, "3")
    assert (tmp_path / "i2i_3.csv").read_bytes() == b"target_iid,similar_iid,ranking"
    assert (tmp_path / "i2u_3.csv").read_bytes() == b"uid,iid,ranking"
    assert (tmp_path / "processed_user_data_3.txt").read_text() == "[]"


def _small_tenant(folder: Path, tenant: str) -> None:
    (folder / f"user_data_{tenant}.csv").write_text(
        "user_id,lang,city,country,interests,asp_position,positions,organisations,competencies_scale,badges,description\n"
        + "".join(f"{u},en,,,,,,,,,\n" for u in range(2, 7))
    )
    (folder / f"item_data_{tenant}.csv").write_text(
        "item_id,container_course,container_workspace,engage_article,engage_microlearning,totara_playlist,document\n"
        + "".join(f"engage_article{i},0,0,1,0,0,\"title {i}\"\n" for i in range(1, 6))
    )
    (folder / f"user_interactions_{tenant}.csv").write_text(
        "user_id,item_id,rating,timestamp\n2,engage_article1,1,1700000000\n3,engage_article2,0,1700000100\n"
    )


def test_batch_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("user_data_2.csv", "item_data_2.csv", "user_interactions_2.csv"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    _small_tenant(tmp_path, "3")
    (tmp_path / "tenants.csv").write_text("tenants\n2\n3\n")
    before = int(time.time())
    code = batch_main(["--query", "popular", "--result_count_user", "3", "--result-count-item", "4",
                       "--threads", "1", "--data_path", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert before <= int((tmp_path / "ml_completed").read_text()) <= int(time.time())
    assert not (tmp_path / "ml_started").exists()
    assert (tmp_path / "i2i_3.csv").read_bytes() == b"target_iid,similar_iid,ranking"
    assert (tmp_path / "i2u_3.csv").read_bytes() == b"uid,iid,ranking"
    i2u = parse(tmp_path / "i2u_2.csv", I2U_LINE, I2U_HEADER)
    i2i = parse(tmp_path / "i2i_2.csv", I2I_LINE, I2I_HEADER)
    assert i2u and i2i
    from ml_service.data.load import load_tenant
    from ml_service.source.base import ExportSnapshot

    data = load_tenant(ExportSnapshot(tmp_path, ["2"]).files("2"))
    positive = data.positive_matrix().tocoo()
    seen = {(data.users.ids[u], data.items.ids[i]) for u, i in zip(positive.row, positive.col)}
    assert seen and not seen & {(u, i) for u, i, _ in i2u}
    assert {u for u, _, _ in i2u} <= set(data.users.ids)
    assert all(TYPE_FAMILY[item_type_of(a)] == TYPE_FAMILY[item_type_of(b)] and a != b for a, b, _ in i2i)
    err = capsys.readouterr().err
    assert "tenant 3: skipped" in err and "i2u_3.csv hold only their header" in err
    assert "served its most popular items" not in err  # that is what the service does, not the batch
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_batch_run_honours_ml_seen_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ML_SEEN_POLICY=demote reaches the batch (spec §11 item 14): positives are demoted, not left out."""
    for name in ("user_data_2.csv", "item_data_2.csv", "user_interactions_2.csv"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "tenants.csv").write_text("tenants\n2\n")
    from ml_service.data.load import load_tenant
    from ml_service.source.base import ExportSnapshot

    data = load_tenant(ExportSnapshot(tmp_path, ["2"]).files("2"))
    positive = data.positive_matrix().tocoo()
    seen = {(data.users.ids[u], data.items.ids[i]) for u, i in zip(positive.row, positive.col)}
    listed = {}
    for policy in ("exclude", "demote"):
        monkeypatch.setenv("ML_SEEN_POLICY", policy)
        args = ["--query", "popular", "--result_count_user", "5", "--threads", "1", "--data_path", str(tmp_path)]
        assert batch_main(args) == 0
        listed[policy] = {(u, i) for u, i, _ in parse(tmp_path / "i2u_2.csv", I2U_LINE, I2U_HEADER)}
    assert seen and not seen & listed["exclude"]
    assert seen & listed["demote"]


def test_batch_applies_the_input_limits_of_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ML_MAX_RECORD_MB holds for the batch as for `ml-service train`: a 2 MB record fails its tenant, not the run."""
    for name in ("user_data_2.csv", "item_data_2.csv", "user_interactions_2.csv"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    with open(tmp_path / "item_data_2.csv", "a", encoding="utf-8") as handle:
        handle.write("engage_article999,0,0,1,0,0" + ",0" * 24 + ',"' + "x" * (2 << 20) + '"\n')
    _small_tenant(tmp_path, "3")
    (tmp_path / "tenants.csv").write_text("tenants\n2\n3\n")
    monkeypatch.setenv("ML_MAX_RECORD_MB", "1")
    args = ["--query", "popular", "--result_count_user", "3", "--threads", "1", "--data_path", str(tmp_path)]
    assert batch_main(args) == 1
    err = capsys.readouterr().err
    assert "tenant 2: failed" in err and "ML_MAX_RECORD_MB" in err and "item_data_2.csv" in err, err
    assert "tenant 3: skipped" in err and not (tmp_path / "i2u_2.csv").exists()


def test_refuses_to_run_while_ml_started_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _small_tenant(tmp_path, "0")
    (tmp_path / "ml_started").write_text("1700000000")
    assert batch_main(["--query", "mf", "--data_path", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ml_started exists" in err and "delete that file" in err
    assert (tmp_path / "ml_started").read_text() == "1700000000"
    assert not (tmp_path / "i2i_0.csv").exists() and not (tmp_path / "ml_completed").exists()


def test_failed_tenant_does_not_stop_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _small_tenant(tmp_path, "0")
    (tmp_path / "tenants.csv").write_text("")  # empty means tenant 0 only
    assert batch_main(["--query", "hybrid", "--data-path", str(tmp_path)]) == 0
    assert (tmp_path / "i2u_0.csv").read_bytes() == b"uid,iid,ranking"
    (tmp_path / "tenants.csv").write_text("tenants\n0\n4\n")  # tenant 4 has no files
    assert batch_main(["--query", "hybrid", "--data-path", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tenant 4: failed" in err and "user_interactions_4.csv" in err
    assert (tmp_path / "ml_completed").exists() and not (tmp_path / "ml_started").exists()
    assert not (tmp_path / "i2i_4.csv").exists()


def test_legacy_and_hyphenated_arguments() -> None:
    legacy = build_parser().parse_args(
        ["--query", "hybrid", "--result_count_user", "7", "--result_count_item", "9", "--threads", "2", "--data_path", "/x"]
    )
    modern = build_parser().parse_args(
        ["--query", "AUTO", "--result-count-user", "7", "--result-count-item", "9", "--data-path", "/x"]
    )
    assert (legacy.query, legacy.result_count_user, legacy.result_count_item, legacy.threads) == ("hybrid", 7, 9, 2)
    assert (modern.query, modern.result_count_user, modern.result_count_item, modern.data_path) == ("auto", 7, 9, Path("/x"))
    for bad in (["--query", "svd", "--data_path", "/x"], ["--result_count_user", "0", "--data_path", "/x"], []):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(bad)
        assert exit_info.value.code == 2


def test_missing_data_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch_main(["--data_path", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _run_lock_outside_the_working_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """batch takes the store's run lock under ML_MODELS_DIR: keep it out of the folder the tests run in."""
    monkeypatch.setenv("ML_MODELS_DIR", str(tmp_path_factory.mktemp("models")))
