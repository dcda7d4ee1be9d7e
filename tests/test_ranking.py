"""ranking.rank_user fast paths (per-type factor blocks, direct CSR reads) agree with the plain computation."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.ranking import rank_user
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
