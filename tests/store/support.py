"""Small models for the store tests: a factors model with odd ids and every optional array, an item-item model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays
from ml_service.models.base import FACTORS, ITEM_ITEM, TrainedModel

ODD_IDS = ["12", "a,b", 'say "hi"', "line\nbreak", " spaced ", "ünïcödé-日本", "", "back\\slash", "\udc80lone", "tab\there"]


def factors_model(seed: int = 0, n_users: int = 10, n_items: int = 7, algorithm: str = "mf") -> TrainedModel:
    rng = np.random.default_rng(seed)
    positives = sp.csr_matrix(
        (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    )
    return model_from_arrays(
        algorithm=algorithm,
        user_ids=ODD_IDS[:n_users] if n_users <= len(ODD_IDS) else [str(i) for i in range(n_users)],
        item_ids=[f"engage_article{i}" for i in range(n_items)],
        item_types=(np.arange(n_items) % 5).astype(np.int8),
        kind=FACTORS,
        user_factors=rng.standard_normal((n_users, 4), dtype=np.float32),
        item_factors=rng.standard_normal((n_items, 4), dtype=np.float32),
        user_biases=rng.standard_normal(n_users, dtype=np.float32),
        item_biases=rng.standard_normal(n_items, dtype=np.float32),
        positives=positives,
        user_cold=np.arange(n_users) % 3 == 0,
        popularity=rng.random(n_items, dtype=np.float32),
        similarity_vectors=rng.standard_normal((n_items, 3), dtype=np.float32),
        item_warm=np.ones(n_items, bool),
        params={"epochs": np.int64(12), "components": 4},
        metrics={"ndcg@10": np.float32(0.25), "auc": 0.8},
        info={"data_fingerprint": "abc123", "seconds": 1.5},
    )


def item_item_model() -> TrainedModel:
    rng = np.random.default_rng(1)
    history = sp.random(5, 6, density=0.4, format="csr", dtype=np.float32, random_state=1)
    return model_from_arrays(
        algorithm="ease",
        user_ids=["1", "2", "3", "4", "5"],
        item_ids=["container_course1", "container_workspace2", "engage_article3", "engage_microlearning4", "totara_playlist5", "x,y\n"],
        item_types=np.array([0, 1, 2, 3, 4, 2], np.int8),
        kind=ITEM_ITEM,
        item_item=rng.standard_normal((6, 6), dtype=np.float32),
        history=history,
        positives=sp.csr_matrix((5, 6), dtype=np.float32),  # an empty CSR must round-trip too
        content_vectors=np.zeros((6, 0), np.float32),  # zero-size arrays too
    )


def assert_same_model(a: TrainedModel, b: TrainedModel) -> None:
    assert (a.algorithm, a.kind, a.user_ids, a.item_ids) == (b.algorithm, b.kind, b.user_ids, b.item_ids)
    for name in (
        "item_types", "user_factors", "item_factors", "user_biases", "item_biases", "item_item", "user_cold",
        "popularity", "similarity_vectors", "content_vectors", "item_warm",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    for name in ("history", "positives"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert sp.issparse(y) and x.shape == y.shape and x.dtype == y.dtype and (x != y).nnz == 0, name
