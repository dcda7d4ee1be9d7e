"""Store benchmark: publish and load times of a 50k-user x 10k-item tenant, and what publish's checks cost of them.

    .venv/bin/python benchmarks/store_publish.py

The model has the shapes of a real tenant (64 factors, biases, ~20 positives per user, similarity and content
vectors) with random values. Times are the median of `--repeats` runs on the shared machine; the check
(shapes, NaN/inf in every float array, item type codes) runs inside publish and is also timed on its own.
Writes benchmarks/results/store_publish.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

RESULTS = Path(__file__).parent / "results"


def make_model(users: int, items: int, k: int, seed: int = 0):  # type: ignore[no-untyped-def]
    from ml_service.models.base import FACTORS, TrainedModel, model_from_arrays

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(users), 20)
    cols = rng.integers(0, items, rows.size)
    positives = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    return model_from_arrays(
        algorithm="bench", user_ids=[str(i) for i in range(users)], item_ids=[f"engage_article{i}" for i in range(items)],
        item_types=(np.arange(items) % 5).astype(np.int8), kind=FACTORS,
        user_factors=rng.standard_normal((users, k), dtype=np.float32),
        item_factors=rng.standard_normal((items, k), dtype=np.float32),
        user_biases=rng.standard_normal(users, dtype=np.float32), item_biases=rng.standard_normal(items, dtype=np.float32),
        positives=positives, user_cold=np.zeros(users, bool), popularity=rng.random(items, dtype=np.float32),
        similarity_vectors=rng.standard_normal((items, 32), dtype=np.float32),
        content_vectors=rng.standard_normal((items, 32), dtype=np.float32), item_warm=np.ones(items, bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from ml_service.store import ModelStore
    from ml_service.store.format import check_publishable

    model = make_model(args.users, args.items, args.factors)
    timings: dict[str, list[float]] = {"check_s": [], "publish_s": [], "load_verified_s": [], "load_unverified_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp) / "recommender", keep_versions=2)
        for _ in range(args.repeats):
            started = time.perf_counter()
            check_publishable(model, "0")
            timings["check_s"].append(time.perf_counter() - started)
            started = time.perf_counter()
            version = store.publish("0", model)
            timings["publish_s"].append(time.perf_counter() - started)
            for key, verify in (("load_verified_s", True), ("load_unverified_s", False)):
                started = time.perf_counter()
                store.load("0", version, verify_hashes=verify)
                timings[key].append(time.perf_counter() - started)
        size_mb = sum(p.stat().st_size for p in (store.root / "0" / version).iterdir()) / 1e6
    medians = {key: round(statistics.median(values), 4) for key, values in timings.items()}
    result = {
        "command": "benchmarks/store_publish.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": platform.platform(), "python": sys.version.split()[0],
        "shape": {"users": args.users, "items": args.items, "factors": args.factors}, "version_mb": round(size_mb, 1),
        "median": medians, "runs": {key: [round(v, 4) for v in values] for key, values in timings.items()},
        "check_share_of_publish": round(medians["check_s"] / medians["publish_s"], 4),
        "notes": ["run while other sessions shared the 2 cores; publish includes fsync of every file"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "store_publish.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]), "check share", result["check_share_of_publish"], "->", out)


if __name__ == "__main__":
    main()
