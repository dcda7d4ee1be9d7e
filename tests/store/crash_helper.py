"""Publishes models in a loop until killed: the SIGKILL test of tests/store/test_model_store.py runs it as a subprocess."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ml_service.models.base import model_from_arrays
from ml_service.models.base import FACTORS, TrainedModel
from ml_service.store import ModelStore


def big_model(seed: int) -> TrainedModel:
    """About 6 MB of arrays, so a kill lands inside file writes often."""
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 6000, 3000, 160
    rows, cols = rng.integers(0, n_users, 30_000), rng.integers(0, n_items, 30_000)
    positives = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    return model_from_arrays(
        algorithm="als",
        user_ids=[str(i) for i in range(n_users)],
        item_ids=[f"engage_article{i}" for i in range(n_items)],
        item_types=np.full(n_items, 2, np.int8),
        kind=FACTORS,
        user_factors=rng.standard_normal((n_users, k), dtype=np.float32),
        item_factors=rng.standard_normal((n_items, k), dtype=np.float32),
        positives=positives,
        params={"seed": seed},
    )


def main() -> None:
    root, tenant = Path(sys.argv[1]), sys.argv[2]
    store = ModelStore(root, keep_versions=2)
    models = [big_model(seed) for seed in range(2)]
    print("ready", flush=True)
    i = 0
    while True:
        store.publish(tenant, models[i % 2])
        i += 1


if __name__ == "__main__":
    main()
