"""Cold-start benchmark: users whose every interaction is held out, served by popularity vs from their side features.

    .venv/bin/python benchmarks/cold_start.py --seeds 0 1 2 --threads 2

On a seeded synthetic tenant (tests' make_tenant: user groups prefer one topic; the group shows in the user's
position and description), 20 % of the users with a positive interaction lose all their interactions
(training/split.cold_user_split). Each algorithm is tuned and fitted on what remains (tune's own validation split
inside it) and scored by training/metrics.evaluate on the held-out users only, exactly as /user-items ranks:
popular serves them popularity per type; als, mf (implicit / LightFM factors, then models/projection.py ridge
from user features) and partial / hybrid (LightFM user features) serve them personalised lists.
Writes benchmarks/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
ALGORITHMS = ("popular", "als", "mf", "partial", "hybrid")


def run(seed: int, algorithms: tuple[str, ...], threads: int, n_users: int, n_items: int) -> dict[str, dict[str, float]]:
    """NDCG@10 etc. of each algorithm for the held-out (new) users of one synthetic tenant."""
    from ml_service.demo.synthetic import make_tenant
    from ml_service.models import registry
    from ml_service.training.context import TrainContext
    from ml_service.training.metrics import evaluate
    from ml_service.training.split import cold_user_split
    from ml_service.training.tune import fit_final, tune

    data = make_tenant(n_users=n_users, n_items=n_items, seed=seed)
    split = cold_user_split(data, 0.2, seed=seed)
    train_data = dataclasses.replace(data, interactions=split.train)
    results: dict[str, dict[str, float]] = {}
    for name in algorithms:
        started = time.monotonic()
        algorithm = registry.get(name)
        tuned = tune(algorithm, TrainContext(train_data, threads=threads, seed=seed))
        model = fit_final(algorithm, tuned.params, TrainContext(train_data, threads=threads, seed=seed, features=tuned.features))
        metrics = evaluate(model, data, split)
        new_users = np.unique(split.test.user)
        results[name] = {
            "ndcg@10": round(float(metrics["ndcg@10"]), 4),
            "recall@10": round(float(metrics["recall@10"]), 4),
            "new_users": int(new_users.size),
            "new_users_personalised": int((~np.asarray(model.user_cold)[new_users]).sum()) if name != "popular" else 0,
            "seconds": round(time.monotonic() - started, 2),
        }
        print(seed, name, results[name], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=300)
    args = parser.parse_args()
    per_seed = {seed: run(seed, tuple(args.algorithms), args.threads, args.users, args.items) for seed in args.seeds}
    mean = {
        name: round(float(np.mean([per_seed[s][name]["ndcg@10"] for s in args.seeds])), 4) for name in args.algorithms
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cold_start.json"
    out.write_text(json.dumps({
        "command": "benchmarks/cold_start.py " + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
        ),
        "machine": platform.platform(),
        "users": args.users, "items": args.items,
        "mean_ndcg@10": mean,
        "per_seed": per_seed,
    }, indent=2) + "\n")
    print("mean NDCG@10 of new users:", mean, "->", out)


if __name__ == "__main__":
    main()
