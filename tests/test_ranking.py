"""ranking fast paths (per-type slices, per-family vector blocks, direct CSR reads) agree with the plain computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays, with_arrays
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
    model = with_arrays(model, positives=with_zero)  # an explicit 0 is not a positive: course index 1 stays recommendable
    ranked = [i for i, _ in rank_user(model, user, 0, 10)]
    assert 0 not in ranked and 1 in ranked
    model = with_arrays(model, positives=np.asarray(with_zero.todense()))  # a dense matrix behaves the same
    assert [i for i, _ in rank_user(model, user, 0, 10)] == ranked
    model = with_arrays(model, positives=csr)


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
    base = make_model(seed=seed)
    rng = np.random.default_rng(seed)
    k = 4
    item_types = rng.integers(0, 5, n_items).astype(np.int8)
    user_factors = rng.standard_normal((n_users, k)).astype(np.float32)
    item_factors = rng.standard_normal((n_items, k)).astype(np.float32)
    user_biases = rng.standard_normal(n_users).astype(np.float32)
    item_biases = rng.standard_normal(n_items).astype(np.float32)
    if ties:
        user_factors[:] = np.round(user_factors)
        item_factors[:] = np.round(item_factors)
        user_biases[:] = 0
        item_biases[:] = np.round(item_biases)
    positives = sp.random(n_users, n_items, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    user_cold = rng.random(n_users) < 0.2
    popularity = (np.round(rng.random(n_items) * 5) if ties else rng.random(n_items)).astype(np.float32)
    sim = rng.standard_normal((n_items, 3))
    content = rng.standard_normal((n_items, 5))
    if ties:
        sim, content = np.round(sim) + 0.5, np.round(content) + 0.5  # never a zero row
    return model_from_arrays(
        base.algorithm, [str(u + 1) for u in range(n_users)], [f"container_course{i}" for i in range(n_items)], item_types,
        user_factors=user_factors, item_factors=item_factors, user_biases=user_biases, item_biases=item_biases,
        positives=positives, user_cold=user_cold, popularity=popularity,
        similarity_vectors=(sim / np.linalg.norm(sim, axis=1, keepdims=True)).astype(np.float32),
        content_vectors=(content / np.linalg.norm(content, axis=1, keepdims=True)).astype(np.float32),
        item_warm=rng.random(n_items) < 0.8, metrics=base.metrics,
    )


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
    model = with_arrays(model, similarity_vectors=None)
    model = with_arrays(model, content_vectors=None)
    assert rank_similar(model, 0, 5) == []


def test_top_k_ignores_nan_unless_needed() -> None:
    from ml_service.ranking import top_k

    scores = np.array([1.0, np.nan, 3.0, 2.0], dtype=np.float32)
    assert top_k(scores, np.arange(4), 3).tolist() == [2, 3, 0]


# ------------------------------------------------------------------------------------------------ the batched entry points
def _one_by_one(model, users, t: int, k: int, policy: str, demotion: float = 0.5, exclude=None):  # type: ignore[no-untyped-def]
    """Per-user lists through the one-learner path: (items, scores) per user."""
    from ml_service.ranking import rank, type_candidates

    out = []
    for user in users:
        lists = rank(model, [int(user)], t, k, policy, demotion=demotion, exclude=exclude)
        out.append(lists.pairs(0))
    assert all(type_candidates(model, t, exclude).size >= len(pairs) for pairs in out)
    return out


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("policy", ["exclude", "demote"])
def test_many_learners_at_once_equal_one_by_one(ties: bool, policy: str) -> None:
    """rank() on a scored block (evaluation, batch) lists what it lists for each learner alone (serving)."""
    from ml_service.ranking import rank, score

    model = _random_model(seed=21, ties=ties)
    model.user_factors[3, 0] = np.nan  # a non-finite row goes row by row
    users = np.array([*range(model.n_users), -1])  # -1: an unknown learner, served popularity
    rng = np.random.default_rng(0)
    exclude = rng.random(model.n_items) < 0.1
    for t in range(5):
        for k in (1, 4, 1000):
            for demotion in (0.5, 0.3):
                for skip in (None, exclude):
                    scored = score(model, users)
                    rows = np.flatnonzero(rng.random(users.size) < 0.7)
                    lists = rank(model, scored, t, k, policy, rows=rows, demotion=demotion, exclude=skip)
                    expected = _one_by_one(model, users[rows], t, k, policy, demotion, skip)
                    for row, pairs in enumerate(expected):
                        got = lists.pairs(row)
                        assert [i for i, _ in got] == [i for i, _ in pairs]
                        assert np.allclose([s for _, s in got], [s for _, s in pairs], atol=1e-5, equal_nan=True)
                    assert lists.listed().sum() == sum(len(pairs) for pairs in expected)


def test_whole_block_ranked_in_place_gives_the_same_lists_again() -> None:
    """One item type, all rows: EXCLUDE marks the scores in place; ranking again lists the same, demoting refuses."""
    from ml_service.ranking import rank, score

    model = _random_model(seed=22, ties=True)
    model.item_types[:] = 0
    scored = score(model, np.arange(model.n_users))
    raw = scored.scores.copy()
    first = rank(model, scored, 0, 5)
    assert scored.seen_marked and not np.array_equal(raw, scored.scores)
    again = rank(model, scored, 0, 5)
    assert np.array_equal(first.items[first.listed()], again.items[again.listed()])
    expected = _one_by_one(model, range(model.n_users), 0, 5, "exclude")
    assert [first.pairs(u) for u in range(model.n_users)] == [[(i, float(np.float32(s))) for i, s in p] for p in expected]
    with pytest.raises(ValueError, match="score it again"):
        rank(model, scored, 0, 5, "demote")


def test_exclude_and_cached_type_items_do_not_mix() -> None:
    from ml_service.ranking import rank

    model = make_model()
    with pytest.raises(ValueError, match="not both"):
        rank(model, [0], 0, 3, exclude=np.zeros(model.n_items, bool), type_items=np.arange(3))
    with pytest.raises(ValueError, match="seen_policy"):
        rank(model, [0], 0, 3, "keep")


@pytest.mark.parametrize("ties", [False, True])
def test_many_targets_at_once_equal_one_by_one(ties: bool) -> None:
    """similar() for many targets (the batch's i2i) lists what it lists for each target alone (/similar-items)."""
    from ml_service.ranking import similar

    model = _random_model(seed=23, ties=ties)
    rng = np.random.default_rng(1)
    if ties:  # small integers: every dot product exact in float32, whichever product computes it, so ties are real
        model = with_arrays(model, similarity_vectors=rng.integers(-2, 3, model.similarity_vectors.shape).astype(np.float32))
        model = with_arrays(model, content_vectors=rng.integers(-2, 3, model.content_vectors.shape).astype(np.float32))
    exclude = rng.random(model.n_items) < 0.1
    for skip in (None, exclude):
        targets = np.arange(model.n_items)
        lists = similar(model, targets, 6, exclude=skip)
        for row, item in enumerate(targets.tolist()):
            alone = similar(model, [item], 6, exclude=skip).pairs(0)
            got = lists.pairs(row)
            assert [i for i, _ in got] == [i for i, _ in alone]
            assert np.allclose([s for _, s in got], [s for _, s in alone], atol=1e-6)
            assert item not in [i for i, _ in got] and (skip is None or not skip[[i for i, _ in got]].any())


def test_a_filter_in_listable_reaches_serving_evaluation_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam for a new item filter (e.g. items Totara marks invisible): one function, every list obeys it."""
    from ml_service.batch import i2i_lines, i2u_lines
    from ml_service.ranking import select
    from ml_service.serving import TenantIndex
    from ml_service.training.metrics import evaluate
    from ml_service.training.split import Split
    from tests.training.test_metrics import _random_case

    model, data, split = _random_case(seed=4, flavour="fine")
    hidden = np.zeros(model.n_items, bool)
    hidden[::3] = True
    original = select.listable
    monkeypatch.setattr(select, "listable", lambda m, exclude=None: (~hidden) & (True if (o := original(m, exclude)) is None else o))
    model.item_ids = [f"container_course{i}" for i in range(model.n_items)]
    model.user_ids = [str(u + 1) for u in range(model.n_users)]
    vectors = np.eye(model.n_items, 3, dtype=np.float32) + 0.1
    model = with_arrays(model, similarity_vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    index = TenantIndex("0", "v", model)
    listed: set[int] = set()
    for user in model.user_ids:
        for t in np.unique(model.item_types):
            listed |= {i for i, _ in index.rank_user(user, ranking_type_name(int(t)), 50)}
    for item in model.item_ids:
        listed |= {i for i, _ in index.rank_similar(item, 50) or []}
    assert listed and not hidden[sorted(listed)].any()
    # evaluation: every held-out positive hidden -> nothing can be hit; coverage counts listed items only
    held = split.test.subset(np.isin(split.test.item, np.flatnonzero(hidden)))
    result = evaluate(model, data, Split(split.train, held), k=50, auc=False)
    assert result["users"] > 0 and result["ndcg@50"] == 0.0
    assert result["coverage@50"] <= (~hidden).sum() / model.n_items
    ids = {iid: i for i, iid in enumerate(model.item_ids)}
    batch_items = {ids[line.split(",")[1]] for line in "".join(i2u_lines(model, 50)).splitlines()[1:]}
    batch_items |= {ids[part] for line in "".join(i2i_lines(model, 50)).splitlines()[1:] for part in line.split(",")[1:2]}
    assert batch_items and not hidden[sorted(batch_items)].any()


def ranking_type_name(t: int) -> str:
    from ml_service.data.tenant import ITEM_TYPES

    return ITEM_TYPES[t]
