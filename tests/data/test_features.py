"""Tests for the per-mode user and item feature matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.data.features import (
    MAX_VALUES_PER_SPREAD_COLUMN,
    build_features,
    item_content_vectors,
    top_values,
    user_side_matrix,
)
from ml_service.data.tenant import TYPE_INDEX, Interactions, Items, TenantData, Users


def make_users(rows: list[dict]) -> Users:
    def col(name: str, default):
        return [row.get(name, default) for row in rows]

    return Users(
        ids=col("id", ""),
        lang=col("lang", ""),
        city=col("city", ""),
        country=col("country", ""),
        interests=col("interests", []),
        asp_position=col("asp_position", []),
        positions=col("positions", []),
        organisations=col("organisations", []),
        badges=col("badges", []),
        competencies=col("competencies", {}),
        description=col("description", ""),
    )


def make_items(ids: list[str], tag_names: list[str], tags: list[list[int]], documents: list[str]) -> Items:
    type_index = np.array([TYPE_INDEX[i.rstrip("0123456789")] for i in ids], np.int8)
    matrix = sp.csr_matrix(np.array(tags, np.float32).reshape(len(ids), len(tag_names)))
    return Items(ids, type_index, tag_names, matrix, documents)


def tenant(users: Users, items: Items) -> TenantData:
    return TenantData("0", users, items, Interactions.empty())


@pytest.fixture
def small() -> TenantData:
    users = make_users(
        [
            {"id": "1", "lang": "en", "country": "GB", "city": "London", "interests": ["7", "8"],
             "positions": ["3"], "competencies": {"12": 4.0, "5": 2.0}, "description": "Loves machine learning"},
            {"id": "2", "lang": "fr", "country": "", "city": "Paris", "interests": ["7"], "badges": ["b1", "b1"],
             "competencies": {"12": 2.0}, "description": "Apprentissage automatique et données"},
            {"id": "3", "lang": "en", "country": "GB", "description": ""},
        ]
    )
    items = make_items(
        ["engage_article1", "container_course2", "totara_playlist3", "engage_microlearning4"],
        ["topic_ml", "tag_python"],
        [[1, 0], [1, 1], [0, 0], [0, 1]],
        ["Machine learning basics", "Python for data science", "", "Машинное обучение за пять минут"],
    )
    return tenant(users, items)


def dense(m: sp.csr_matrix) -> np.ndarray:
    return np.asarray(m.todense())


def test_mf_is_identity_only(small: TenantData) -> None:
    for identity in (False, True):
        fs = build_features(small, "mf", identity=identity)
        assert fs.user is None and fs.item is None and fs.user_names == [] and fs.item_names == []


def test_unknown_mode_is_rejected(small: TenantData) -> None:
    with pytest.raises(ValueError, match="hybrid"):
        build_features(small, "deep")


def test_partial_user_columns_and_values(small: TenantData) -> None:
    fs = build_features(small, "partial")
    assert fs.user_names == [
        "lang_en", "lang_fr", "country_GB", "interests_7", "interests_8", "positions_3", "badges_b1",
        "competencies_scale_5", "competencies_scale_12",
    ]
    assert fs.user.dtype == np.float32 and isinstance(fs.user, sp.csr_matrix)
    u = dense(fs.user)
    assert u.shape == (3, len(fs.user_names))
    col = {name: i for i, name in enumerate(fs.user_names)}
    np.testing.assert_array_equal(u[:, col["lang_en"]], [1, 0, 1])
    np.testing.assert_array_equal(u[:, col["country_GB"]], [1, 0, 1])  # empty country is no value
    np.testing.assert_array_equal(u[:, col["badges_b1"]], [0, 1, 0])  # a value repeated in a row stays 1
    # Competency proficiency is divided by the column maximum: 4 -> 1.0, 2 -> 0.5; missing -> 0.
    np.testing.assert_allclose(u[:, col["competencies_scale_12"]], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(u[:, col["competencies_scale_5"]], [1.0, 0.0, 0.0])


def test_partial_item_columns(small: TenantData) -> None:
    fs = build_features(small, "partial")
    assert fs.item_names == [
        "container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist",
        "topic_ml", "tag_python",
    ]
    assert "internal_id" not in fs.item_names and "internal_id" not in fs.user_names
    np.testing.assert_array_equal(
        dense(fs.item),
        [[0, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0, 1]],
    )


def test_spread_keeps_the_30_most_frequent_values_with_deterministic_ties() -> None:
    # Value v<k> is held by k users for k in 1..40, plus ties among the count-1 values.
    rows = []
    for k in range(1, 41):
        rows += [{"id": f"{k}-{j}", "interests": [f"v{k:02d}"]} for j in range(k)]
    rows += [{"id": "tie-b", "interests": ["zz_b"]}, {"id": "tie-a", "interests": ["zz_a"]}]
    items = make_items(["engage_article1"], [], [[]], [""])
    fs = build_features(tenant(make_users(rows), items), "partial")
    interests = [n for n in fs.user_names if n.startswith("interests_")]
    assert len(interests) == MAX_VALUES_PER_SPREAD_COLUMN
    assert interests == [f"interests_v{k:02d}" for k in range(40, 10, -1)]
    assert top_values(["b", "a", "c", "a", "b"]) == ["a", "b", "c"]
    assert top_values(["b", "a"], limit=1) == ["a"]


def test_identity_columns_follow_the_features(small: TenantData) -> None:
    plain = build_features(small, "partial")
    fs = build_features(small, "partial", identity=True)
    n_user_features = len(plain.user_names)
    assert fs.user.shape == (3, n_user_features + 3)
    assert fs.user_names[n_user_features:] == ["id:1", "id:2", "id:3"]
    np.testing.assert_array_equal(dense(fs.user)[:, n_user_features:], np.eye(3))
    n_item_features = len(plain.item_names)
    assert fs.item.shape == (4, n_item_features + 4)
    assert fs.item_names[n_item_features:] == ["id:" + i for i in small.items.ids]
    np.testing.assert_array_equal(dense(fs.item)[:, :n_item_features], dense(plain.item))


def test_hybrid_appends_text_after_structured_features(small: TenantData) -> None:
    partial = build_features(small, "partial")
    fs = build_features(small, "hybrid")
    n_struct = len(partial.user_names)
    assert fs.user_names[:n_struct] == partial.user_names
    user_terms = fs.user_names[n_struct:]
    assert {"text:london", "text:paris", "text:machine", "text:apprentissage", "text:donnees"} <= set(user_terms)
    assert "text:et" not in user_terms  # a French stop word
    assert fs.user.shape == (3, len(fs.user_names)) and fs.user.dtype == np.float32
    text_part = dense(fs.user)[:, n_struct:]
    np.testing.assert_allclose(np.linalg.norm(text_part, axis=1), [1.0, 1.0, 0.0], rtol=1e-5)
    item_terms = fs.item_names[len(partial.item_names):]
    assert {"text:python", "text:машинное", "text:обучение"} <= set(item_terms)


def test_hybrid_with_identity_puts_identity_last(small: TenantData) -> None:
    fs = build_features(small, "hybrid", identity=True)
    assert fs.item_names[-4:] == ["id:" + i for i in small.items.ids]
    assert fs.item.shape[1] == len(fs.item_names)


def test_empty_tags_text_and_users_are_handled() -> None:
    users = make_users([{"id": "1"}, {"id": "2"}])
    items = make_items(["engage_article1", "totara_playlist2"], [], [[], []], ["", ""])
    data = tenant(users, items)
    for mode in ("partial", "hybrid"):
        fs = build_features(data, mode)
        assert fs.user.shape == (2, 0) and fs.user_names == []
        assert fs.item.shape == (2, 5) and fs.item_names[-1] == "totara_playlist"
    fs = build_features(data, "hybrid", identity=True)
    assert fs.user.shape == (2, 2) and fs.user_names == ["id:1", "id:2"]
    assert item_content_vectors(data).shape == (2, 0)
    assert user_side_matrix(data).shape == (2, 0)
    nobody = tenant(Users.empty(), Items.empty())
    fs = build_features(nobody, "hybrid", identity=True)
    assert fs.user.shape == (0, 0) and fs.item.shape == (0, 5)


def test_user_side_matrix_matches_partial_users(small: TenantData) -> None:
    np.testing.assert_array_equal(dense(user_side_matrix(small)), dense(build_features(small, "partial").user))


def test_item_content_vectors_are_normalised_and_reflect_content() -> None:
    docs = [
        "python programming for data science",
        "python data science with pandas",
        "leadership and management of teams",
        "management skills for team leaders",
        "",
    ]
    ids = [f"engage_article{i}" for i in range(5)]
    items = make_items(ids, ["topic_code", "topic_people"], [[1, 0], [1, 0], [0, 1], [0, 1], [0, 0]], docs)
    data = tenant(make_users([{"id": "1"}]), items)
    vectors = item_content_vectors(data, dim=3)
    assert vectors.dtype == np.float32 and vectors.shape[0] == 5 and vectors.shape[1] <= 3
    np.testing.assert_allclose(np.linalg.norm(vectors[:4], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[4], 0.0)
    sims = vectors[:4] @ vectors[:4].T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]
    np.testing.assert_array_equal(vectors, item_content_vectors(data, dim=3))  # seeded


def test_features_of_the_bundled_sample_loaded_by_the_loader() -> None:
    load = pytest.importorskip("ml_service.data.load")
    from pathlib import Path

    from ml_service.source.folder import FolderSource

    sample = Path(__file__).resolve().parents[2] / "src" / "ml_service" / "demo" / "sample"
    snapshot = FolderSource(sample).fetch()
    data = load.load_tenant(snapshot.files("1"))
    fs = build_features(data, "hybrid", identity=True)
    assert fs.user.shape == (data.n_users, len(fs.user_names)) and fs.item.shape == (data.n_items, len(fs.item_names))
    assert len(set(fs.user_names)) == len(fs.user_names) and len(set(fs.item_names)) == len(fs.item_names)
    assert any(n.startswith("competencies_scale_") for n in fs.user_names)
    assert any(n.startswith("text:") for n in fs.item_names) and any(n.startswith("text:") for n in fs.user_names)
    competency_columns = [i for i, n in enumerate(fs.user_names) if n.startswith("competencies_scale_")]
    values = fs.user[:, competency_columns].toarray()
    assert values.min() >= 0 and values.max() == pytest.approx(1.0)
    for column in ("lang", "country", "interests", "positions", "organisations", "badges"):
        assert sum(n.startswith(column + "_") for n in fs.user_names) <= 30
    assert item_content_vectors(data).shape[0] == data.n_items
