"""A learner's latest interactions with dates: newest first, at most N per learner, every rating, none when N is 0."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ml_service.data.recent import recent_interactions
from ml_service.data.tenant import Interactions


def test_keeps_each_learners_latest_interactions() -> None:
    inter = Interactions(
        user=np.array([0, 0, 0, 1, 2, 2], np.int32), item=np.array([0, 1, 2, 1, 0, 3], np.int32),
        rating=np.array([1, 0, 1, 1, 1, 0], np.int8), timestamp=np.array([100, 300, 200, 50, 10, 20], np.int64),
    )
    data = SimpleNamespace(interactions=inter, n_users=4, n_items=4)
    recent = recent_interactions(data, 2)  # type: ignore[arg-type]
    assert recent is not None and recent.shape == (4, 4)
    assert dict(zip(recent[0].indices.tolist(), recent[0].data.tolist())) == {1: 300.0, 2: 200.0}  # item 0 (t=100) is older
    assert dict(zip(recent[1].indices.tolist(), recent[1].data.tolist())) == {1: 50.0}
    assert dict(zip(recent[2].indices.tolist(), recent[2].data.tolist())) == {0: 10.0, 3: 20.0}  # a rating 0 counts too
    assert recent[3].nnz == 0
    assert recent_interactions(data, 0) is None  # type: ignore[arg-type]
