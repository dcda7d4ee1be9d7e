"""Quality and training-speed benchmark: every algorithm, auto, the reference procedure and popular, on held-out data.

    .venv/bin/python benchmarks/quality.py --datasets ml-100k synthetic-20k --protocols random latest

Each (data set, protocol, algorithm) runs in its own process (so peak RSS is its own). The held-out set is 20 % of
each qualifying user's positive interactions (seeded random, or each user's latest 20 %); every model is trained
on the rest only (tuning uses its own validation split inside that), then scored by training/metrics.evaluate,
which builds the lists exactly as /user-items serves them (per item type, seen items excluded, n = 10).
Writes benchmarks/results/quality.json and benchmarks/results/quality_ndcg.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results"
PAUSE = Path(__file__).parent / ".cache" / "PAUSE"
ALGORITHMS = (
    "popular", "mf", "partial", "hybrid", "partial+id", "hybrid+id", "als", "ease", "knn", "lda", "auto", "auto+id",
    "reference-mf", "reference-partial", "reference-hybrid",
)
SPLIT_SEED = 2026


def run_one(dataset_name: str, protocol: str, algorithm: str, threads: int, budget: float, validation: str) -> dict:
    """Train one algorithm on the training part of one data set and evaluate it on the held-out part."""
    from datasets import dataset

    from ml_service.data.load import load_tenant
    from ml_service.models import registry
    from ml_service.source.folder import FolderSource
    from ml_service.training.context import TrainContext
    from ml_service.training.metrics import evaluate
    from ml_service.training.split import holdout_split

    from ml_service.config import Settings

    # "partial+id": the same algorithm with identity feature columns; `auto` runs as the service runs it.
    identity = algorithm.endswith("+id") or (algorithm == "auto" and Settings().identity_features)
    algorithm = algorithm.removesuffix("+id")
    folder = dataset(dataset_name)
    data = load_tenant(FolderSource(folder).fetch().files("0"))
    split = holdout_split(data, 0.2, seed=SPLIT_SEED, protocol=protocol)
    train_data = dataclasses.replace(data, interactions=split.train)
    started = time.monotonic()
    extra: dict = {}
    if algorithm.startswith("reference-"):
        from reference_procedure import train_reference

        model, search = train_reference(train_data, algorithm.split("-", 1)[1], threads=threads)
        extra = {"fits": search.fits, "search": dataclasses.asdict(search)}
    elif algorithm == "auto":
        from ml_service.training.auto import train_auto

        result = train_auto(TrainContext(train_data, threads=threads, seed=42, budget_s=budget, identity=identity, protocol=validation))
        model = result.model
        extra = {"choice": result.choice, "candidate_scores": result.scores, "candidate_seconds": result.seconds,
                 "skipped": result.skipped}
    else:
        from ml_service.training.tune import fit_final, tune

        chosen = registry.get(algorithm)
        tuned = tune(chosen, TrainContext(train_data, threads=threads, seed=42, deadline=time.monotonic() + budget, identity=identity, protocol=validation))
        model = fit_final(chosen, tuned.params, TrainContext(train_data, threads=threads, seed=42, features=tuned.features, identity=identity))
        extra = {"fits": tuned.fits + 1, "params": tuned.params}
    seconds = time.monotonic() - started
    metrics = evaluate(model, data, split)
    return {
        "dataset": dataset_name, "protocol": protocol,
        "algorithm": algorithm + ("+id" if identity and algorithm != "auto" else ""), "identity_features": identity,
        "train_seconds": round(seconds, 2), "validation": validation,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "users": data.n_users, "items": data.n_items, "interactions": len(data.interactions),
        "held_out": int(len(split.test)),
        **{k: round(float(v), 5) for k, v in metrics.items() if isinstance(v, (int, float))},
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-20k"])
    parser.add_argument("--protocols", nargs="+", default=["random", "latest"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=600.0, help="tuning/auto time budget per algorithm (s)")
    parser.add_argument("--validation", default="latest", choices=("latest", "random"),
                        help="hold-out used inside training for tuning and auto (the service's ML_VALIDATION_PROTOCOL)")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--resume", action="store_true", help="skip runs already in --out without an error")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.datasets[0], args.protocols[0], args.algorithms[0], args.threads, args.budget,
                                  args.validation)))
        return 0
    from datasets import dataset

    for name in args.datasets:
        dataset(name)  # prepare once, outside the timed runs
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    def done_before(r: dict) -> bool:
        return args.resume and "error" not in r and (r.get("validation", "random") == args.validation
                                                     or r["algorithm"].startswith("reference-"))

    rows = [r for r in previous.get("results", [])
            if done_before(r) or not (r["dataset"] in args.datasets and r["protocol"] in args.protocols
                                      and r["algorithm"] in args.algorithms)]
    finished = {(r["dataset"], r["protocol"], r["algorithm"]) for r in rows if done_before(r)}
    for name in args.datasets:
        for protocol in args.protocols:
            for algorithm in args.algorithms:
                if (name, protocol, algorithm) in finished:
                    continue
                # Another benchmark needs a quiet machine: wait between runs, never during one (unless this run is it).
                while PAUSE.exists() and not os.environ.get("BENCH_IGNORE_PAUSE"):
                    time.sleep(5)
                command = [sys.executable, __file__, "--one", "--datasets", name, "--protocols", protocol,
                           "--algorithms", algorithm, "--threads", str(args.threads), "--budget", str(args.budget),
                           "--validation", args.validation]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{name} {protocol} {algorithm}: FAILED\n{done.stderr[-2000:]}", file=sys.stderr)
                    rows.append({"dataset": name, "protocol": protocol, "algorithm": algorithm, "error": done.stderr[-500:]})
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{name:14s} {protocol:7s} {algorithm:18s} ndcg@10={row.get('ndcg@10', 0):.4f} "
                      f"recall@10={row.get('recall@10', 0):.4f} auc={row.get('auc', 0):.4f} "
                      f"train={row['train_seconds']:.1f}s rss={row['peak_rss_mb']:.0f}MB", flush=True)
                _write(args.out, rows)
    _write(args.out, rows)
    _plot(rows, args.out.with_name("quality_ndcg.png"))
    return 0


def _write(path: Path, rows: list[dict]) -> None:
    """The results, keeping what a person added to the file (its `notes`, the `commands` that made older rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(path.read_text()) if path.exists() else {}
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:])
    payload = {
        **{key: earlier[key] for key in ("notes",) if key in earlier},
        **({"commands": [c for c in earlier["commands"] if c != command] + [command]} if "commands" in earlier else {}),
        "command": command,
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": rows,
    }
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))


def _plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return
    groups = sorted({(r["dataset"], r["protocol"]) for r in rows if "ndcg@10" in r})
    algos = [a for a in ALGORITHMS if any(r["algorithm"] == a for r in rows)]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.5), squeeze=False)
    for ax, (name, protocol) in zip(axes[0], groups):
        values = [next((r.get("ndcg@10", 0) for r in rows if (r["dataset"], r["protocol"], r["algorithm"]) == (name, protocol, a)), 0) for a in algos]
        colors = ["#888" if a == "popular" else "#c44" if a.startswith("reference") else "#27a" if a == "auto" else "#5a5" for a in algos]
        ax.barh(algos, values, color=colors)
        ax.set_title(f"{name} / {protocol}")
        ax.set_xlabel("NDCG@10 (held-out)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
