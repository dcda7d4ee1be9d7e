"""ranking fast paths (per-type slices, per-family vector blocks, direct CSR reads) agree with the plain computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.data.tenant import TYPE_FAMILY
from ml_service.ranking import rank_similar, rank_user
from tests.api.support import make_model


def test_type_factors_path_matches_full_scoring() -> None:
    model = make_model(seed=5)
    for t in range(5):
        rows = np.flatnonzero(model.item_types == t)
        block = np.ascontiguousarray(model.item_factors[rows])
        for user in range(model.n_users):
            for policy in ("exclude", "demote"):
                plain = rank_user(model, user, t, 10, seen_policy=policy)
                fast = rank_user(model, user, t, 10, seen_policy=policy, type_items=rows, type_factors=block)
                assert [i for i, _ in plain] == [i for i, _ in fast]
                assert np.allclose([s for _, s in plain], [s for _, s in fast], atol=1e-5)


def test_positives_with_explicit_zeros_and_dense_rows() -> None:
    model = make_model(seed=5)
    user = 0  # positives: course index 0 and article index 5
    csr = model.positives
    with_zero = sp.csr_matrix((np.array([1.0, 0.0], np.float32), np.array([0, 1]), np.array([0, 2, 2, 2, 2, 2])), shape=csr.shape)
    model.positives = with_zero  # an explicit 0 is not a positive: course index 1 stays recommendable
    ranked = [i for i, _ in rank_user(model, user, 0, 10)]
    assert 0 not in ranked and 1 in ranked
    model.positives = np.asarray(with_zero.todense())  # a dense matrix behaves the same
    assert [i for i, _ in rank_user(model, user, 0, 10)] == ranked
    model.positives = csr


def test_top_k_breaks_ties_at_the_cut_off_by_lowest_index() -> None:
    import numpy as np

    from ml_service.ranking import top_k

    scores = np.zeros(1000, dtype=np.float32)
    scores[[900, 10]] = 2.0  # two clear winners, then 998 items tied
    candidates = np.arange(1000)[::-1].copy()  # candidate order must not matter
    assert top_k(scores, candidates, 5).tolist() == [10, 900, 0, 1, 2]
    assert top_k(scores, np.arange(1000), 1).tolist() == [10]


def _random_model(seed: int, n_users: int = 40, n_items: int = 300, ties: bool = False):  # type: ignore[no-untyped-def]
    """A factors model with every optional part; `ties` rounds scores and vectors so many tie at the cut-off."""
    model = make_model(seed=seed)
    rng = np.random.default_rng(seed)
    k = 4
    model.user_ids = [str(u + 1) for u in range(n_users)]
    model.item_ids = [f"container_course{i}" for i in range(n_items)]
    model.item_types = rng.integers(0, 5, n_items).astype(np.int8)
    model.user_factors = rng.standard_normal((n_users, k)).astype(np.float32)
    model.item_factors = rng.standard_normal((n_items, k)).astype(np.float32)
    model.user_biases = rng.standard_normal(n_users).astype(np.float32)
    model.item_biases = rng.standard_normal(n_items).astype(np.float32)
    if ties:
        model.user_factors[:] = np.round(model.user_factors)
        model.item_factors[:] = np.round(model.item_factors)
        model.user_biases[:] = 0
        model.item_biases[:] = np.round(model.item_biases)
    model.positives = sp.random(n_users, n_items, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    model.user_cold = rng.random(n_users) < 0.2
    model.popularity = (np.round(rng.random(n_items) * 5) if ties else rng.random(n_items)).astype(np.float32)
    sim = rng.standard_normal((n_items, 3))
    content = rng.standard_normal((n_items, 5))
    if ties:
        sim, content = np.round(sim) + 0.5, np.round(content) + 0.5  # never a zero row
    model.similarity_vectors = (sim / np.linalg.norm(sim, axis=1, keepdims=True)).astype(np.float32)
    model.content_vectors = (content / np.linalg.norm(content, axis=1, keepdims=True)).astype(np.float32)
    model.item_warm = rng.random(n_items) < 0.8
    return model


@pytest.mark.parametrize("ties", [False, True])
def test_precomputed_type_slices_give_the_same_lists(ties: bool) -> None:
    """type_factors + type_biases + type_popularity (what TenantIndex passes) change nothing in the answer."""
    model = _random_model(seed=11, ties=ties)
    for t in range(5):
        rows = np.flatnonzero(model.item_types == t)
        fast = {
            "type_items": rows,
            "type_factors": np.ascontiguousarray(model.item_factors[rows]),
            "type_biases": np.ascontiguousarray(model.item_biases[rows]),
            "type_popularity": np.ascontiguousarray(model.popularity[rows]),
        }
        for user in [None, *range(model.n_users)]:
            for policy in ("exclude", "demote"):
                for n in (0, 1, 5, 1000):
                    plain = rank_user(model, user, t, n, seen_policy=policy)
                    quick = rank_user(model, user, t, n, seen_policy=policy, **fast)
                    assert [i for i, _ in plain] == [i for i, _ in quick]
                    assert np.allclose([s for _, s in plain], [s for _, s in quick], atol=1e-5)
                    assert all(type(i) is int and type(s) is float for i, s in quick)
                    assert len(quick) == min(n, len(plain) if n else 0)


@pytest.mark.parametrize("ties", [False, True])
def test_family_blocks_give_the_same_similar_lists(ties: bool) -> None:
    """rank_similar on contiguous family blocks (warm: similarity vectors, cold: content) equals the gather path."""
    model = _random_model(seed=12, ties=ties)
    family_of = np.asarray(TYPE_FAMILY)[model.item_types]
    for item in range(model.n_items):
        rows = np.flatnonzero(family_of == family_of[item])
        plain = rank_similar(model, item, 7)
        quick = rank_similar(
            model,
            item,
            7,
            family_items=rows,
            family_vectors=np.ascontiguousarray(model.similarity_vectors[rows]),
            family_content=np.ascontiguousarray(model.content_vectors[rows]),
        )
        assert [i for i, _ in plain] == [i for i, _ in quick] and item not in [i for i, _ in quick]
        assert np.allclose([s for _, s in plain], [s for _, s in quick], atol=1e-6)
        assert len(quick) == min(7, rows.size - 1)


def test_similar_without_vectors_or_with_nothing_to_rank() -> None:
    model = _random_model(seed=13)
    assert rank_similar(model, 0, 0) == []
    model.similarity_vectors = None
    model.content_vectors = None
    assert rank_similar(model, 0, 5) == []


def test_top_k_ignores_nan_unless_needed() -> None:
    from ml_service.ranking import top_k

    scores = np.array([1.0, np.nan, 3.0, 2.0], dtype=np.float32)
    assert top_k(scores, np.arange(4), 3).tolist() == [2, 3, 0]
