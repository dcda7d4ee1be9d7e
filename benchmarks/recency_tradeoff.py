"""What recency weighting gains on the newest interactions and costs on random ones: every half-life x floor, scored
on the internal validation (what auto sees) and on both hold-outs (what learners would get).

    .venv/bin/python benchmarks/recency_tradeoff.py --datasets ml-100k ml-1m --algorithms knn ease

For each data set and hold-out (`latest`: each learner's newest 20 %; `random`: a seeded 20 %, the split
benchmarks/quality.py uses), each algorithm is fitted once with its default hyper-parameters on the training
part's own training part (the service's internal `latest` validation split) and once on the whole training part;
every (half-life, floor) of the grid re-weights the history of both fits (models/recency.py: no refit) and is
scored on the internal validation and on the hold-out, through the service's per-type lists. The selection
rules are then replayed on the validation scores: what each would serve, and what that gives on each hold-out.
Writes benchmarks/results/recency_tradeoff.json; rows already there for other (label, data set, hold-out,
algorithm) are kept (the label says which code made them, e.g. the hold-out split before and after a fix).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402

from datasets import dataset  # noqa: E402
from ml_service.data.load import load_tenant  # noqa: E402
from ml_service.models import recency, registry  # noqa: E402
from ml_service.models.base import FitContext, assemble  # noqa: E402
from ml_service.models.extras import validation_extras  # noqa: E402
from ml_service.source.folder import FolderSource  # noqa: E402
from ml_service.training.metrics import evaluate  # noqa: E402
from ml_service.training.split import holdout_split  # noqa: E402
from ml_service.training.tune import VALIDATION_FRACTION  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "recency_tradeoff.json"
SPLIT_SEED = 2026  # benchmarks/quality.py's hold-out
FLOORS = (1.0, 0.5, 0.35, 0.2, recency.MIN_HISTORY_WEIGHT, recency.LOW_HISTORY_WEIGHT)  # 1.0: no decay


def grid() -> list[tuple[float, float]]:
    """(half-life, floor) pairs: no decay once, then every finite half-life with every floor below 1."""
    return [(math.inf, 1.0)] + [(life, floor) for life in recency.HALF_LIVES if math.isfinite(life)
                                for floor in FLOORS if floor < 1.0]


def key(life: float, floor: float) -> str:
    return "none" if not math.isfinite(life) else f"{life:g}@{floor:g}"


def scores_on(algorithm_name: str, params: dict, data, train, split) -> dict[str, tuple[float, np.ndarray]]:
    """NDCG@10 (and per-pair values) on `split` of the part fitted on `train`, for every grid point."""
    algorithm = registry.get(algorithm_name)
    part = algorithm.fit(data, train, params, FitContext(threads=2, seed=42))
    extras = validation_extras(data, train)
    out = {}
    for life, floor in grid():
        weighted = recency._weighted(part, data, train, life, floor if floor < 1.0 else recency.MIN_HISTORY_WEIGHT)
        pairs: list[np.ndarray] = []
        metrics = evaluate(assemble(data, algorithm_name, weighted, extras), data, split, auc=False, pairs_out=pairs)
        out[key(life, floor)] = (float(metrics["ndcg@10"]), np.concatenate(pairs) if pairs else np.zeros(0))
    return out


MARGINS = (0.03, 0.10, 0.20)  # LOW_FLOOR_MARGIN values tried on this evidence (models/recency.py)


def current_rule(validation: dict[str, float], margin: float = recency.LOW_FLOOR_MARGIN) -> str:
    """models/recency.choose_weighting's choice on the grid's validation scores, with `margin` for the low floor."""
    return key(*recency.choose_weighting(lambda life, floor: validation[key(life, floor)], margin))


def _row_key(row: dict) -> tuple:
    return row.get("label", ""), row["dataset"], row["holdout"], row["algorithm"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--algorithms", nargs="+", default=["knn", "ease"])
    parser.add_argument("--holdouts", nargs="+", default=["latest", "random"])
    parser.add_argument("--label", default="", help="what code made these rows (kept apart from other labels' rows)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name in args.datasets:
        data = load_tenant(FolderSource(dataset(name)).fetch().files("0"))
        for holdout in args.holdouts:
            split = holdout_split(data, 0.2, seed=SPLIT_SEED, protocol=holdout)
            train_data = dataclasses.replace(data, interactions=split.train)
            inner = holdout_split(train_data, VALIDATION_FRACTION, seed=42, protocol="latest")
            for algorithm_name in args.algorithms:
                params = dict(registry.get(algorithm_name).candidates(train_data)[-1])
                started = time.monotonic()
                validation = scores_on(algorithm_name, params, train_data, inner.train, inner)
                test = scores_on(algorithm_name, params, data, split.train, split)
                rows.append({
                    "label": args.label, "dataset": name, "holdout": holdout, "algorithm": algorithm_name, "params": params,
                    "seconds": round(time.monotonic() - started, 1),
                    "validation": {k: round(v[0], 5) for k, v in validation.items()},
                    "test": {k: round(v[0], 5) for k, v in test.items()},
                    "current_rule": current_rule({k: v[0] for k, v in validation.items()}),
                    "rule_by_low_floor_margin": {f"{m:g}": current_rule({k: v[0] for k, v in validation.items()}, m)
                                                 for m in MARGINS},
                })
                print(json.dumps(rows[-1]), flush=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {"runs": [], "rows": []}
    run = {"label": args.label, "command": "python benchmarks/recency_tradeoff.py " + " ".join(sys.argv[1:]),
           "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before}}
    args.out.write_text(json.dumps({
        "grid": {"half_lives": [h for h in recency.HALF_LIVES if math.isfinite(h)], "floors": list(FLOORS[1:])},
        "runs": [r for r in earlier["runs"] if r["command"] != run["command"]] + [run],
        "rows": [r for r in earlier["rows"] if _row_key(r) not in {_row_key(new) for new in rows}] + rows,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
