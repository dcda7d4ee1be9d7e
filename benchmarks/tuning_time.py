"""Tuning time before/after the typed model parts: `ml-service train` per algorithm on one export, two source trees.

    nice -n 10 .venv/bin/python benchmarks/tuning_time.py --old-src /tmp/h10-before/src --rounds 3

Every round trains each algorithm once with the old tree and once with this tree's src/ (order alternating, so a
shared machine's load falls on both alike), each a fresh `python -m ml_service train --source <export> --algorithm
<name> --force` process with PYTHONPATH = the tree, anytime publishing off and one thread. The tuning seconds are
what the published model records (info.tuning.seconds: tune() over every candidate); the run fails when old and new
choose different parameters or validate differently. Writes benchmarks/results/tuning_time.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NEW_SRC = HERE.parent / "src"
SAMPLE = NEW_SRC / "ml_service" / "demo" / "sample"


def train_once(src: Path, source: Path, algorithm: str) -> dict[str, Any]:
    """One training process; per tenant: tuning seconds, chosen params, validation NDCG@10."""
    with tempfile.TemporaryDirectory(prefix="tuning-time-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(src), "ML_MODELS_DIR": f"{tmp}/models", "ML_LOGS_DIR": f"{tmp}/logs",
               "ML_ANYTIME_PUBLISH": "false", "ML_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "ml_service", "train", "--source", str(source), "--algorithm", algorithm, "--force"]
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        out: dict[str, Any] = {}
        for meta_path in sorted(Path(tmp, "models").rglob("meta.json")):
            meta = json.loads(meta_path.read_text())
            tenant = meta["tenant"]
            out[tenant] = {"tuning_s": meta["info"].get("tuning", {}).get("seconds"),
                           "params": meta["params"], "ndcg@10": meta["metrics"].get("ndcg@10")}
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-src", type=Path, required=True, help="src/ of the code before the change")
    parser.add_argument("--source", type=Path, default=SAMPLE, help="an export folder (default: the sample export)")
    parser.add_argument("--algorithms", default="ease,knn,edlae,als,mf", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"old": args.old_src.resolve(), "new": NEW_SRC}
    seconds: dict[str, dict[str, list[float]]] = {}
    identical = True
    for round_ in range(args.rounds):
        for algorithm in args.algorithms.split(","):
            runs = {}
            for variant in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
                runs[variant] = train_once(trees[variant], args.source, algorithm)
                total = sum(t["tuning_s"] or 0.0 for t in runs[variant].values())
                seconds.setdefault(algorithm, {"old": [], "new": []})[variant].append(total)
            for tenant, old in runs["old"].items():
                new = runs["new"].get(tenant, {})
                if (old["params"], old["ndcg@10"]) != (new.get("params"), new.get("ndcg@10")):
                    identical = False
                    print(f"DIFFERENT {algorithm} tenant {tenant}: {old} vs {new}", file=sys.stderr)
            print(algorithm, round_, {v: round(s[-1], 3) for v, s in seconds[algorithm].items()}, file=sys.stderr)
    summary = {
        name: {"old_s": round(statistics.median(v["old"]), 3), "new_s": round(statistics.median(v["new"]), 3),
               "ratio_new_over_old": round(statistics.median(v["new"]) / max(statistics.median(v["old"]), 1e-9), 3)}
        for name, v in seconds.items()
    }
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform()},
        "source": str(args.source), "rounds": args.rounds,
        "identical_params_and_validation": identical,
        "tuning_seconds_summed_over_tenants": summary,
        "runs": seconds,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuning_time.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
