"""Measure each `auto` candidate's tuning time, refit time and peak RSS against training/costs.py's estimates.

    .venv/bin/python benchmarks/costs.py --sizes 1000x1000x20000 2000x4000x40000

Each (candidate, size) runs in its own child process (so ru_maxrss is that candidate's peak alone) on a seeded
synthetic tenant (ml_service.demo.synthetic.make_tenant: users x items, interactions = users x per_user), tunes it
as `auto` does (tune() on the same hold-out) and refits it on all data. Writes benchmarks/results/costs.json
with the measured and the estimated numbers side by side; the coefficients in training/costs.py were set
from these measurements and the issue's (MovieLens-100k, 10k items).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CANDIDATES = ("popular", "knn", "ease", "als", "lda", "mf", "partial", "hybrid")

CHILD = r"""
import json, resource, sys, time
from ml_service.demo.synthetic import make_tenant
from ml_service.models import registry
from ml_service.training.context import TrainContext
from ml_service.training.tune import fit_final, tune
name, users, items, interactions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = make_tenant(n_users=users, n_items=items, per_user=max(1, interactions // users), seed=7)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
algorithm = registry.get(name)
started = time.monotonic()
tuned = tune(algorithm, TrainContext(data, threads=2, seed=7, protocol="latest"))
tune_s = time.monotonic() - started
started = time.monotonic()
fit_final(algorithm, tuned.params, TrainContext(data, threads=2, seed=7, protocol="latest", features=tuned.features))
fit_s = time.monotonic() - started
print(json.dumps({"tune_s": round(tune_s, 2), "fit_s": round(fit_s, 2), "fits": tuned.fits,
                  "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "base_mb": round(base / 1024),
                  "users": data.n_users, "items": data.n_items, "interactions": len(data.interactions)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000x1000x20000", "2000x4000x40000"])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--out", type=Path, default=RESULTS / "costs.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ml_service.training.costs import estimate

    load_before = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    for size in args.sizes:
        users, items, interactions = (int(x) for x in size.split("x"))
        for name in args.candidates:
            done = subprocess.run([sys.executable, "-c", CHILD, name, str(users), str(items), str(interactions)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                rows.append({"candidate": name, "size": size, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            cost = estimate(name, measured["users"], measured["items"], measured["interactions"])
            rows.append({"candidate": name, "size": size, "measured": measured,
                         "estimated": None if cost is None else {"tune_s": round(cost.tune_s, 2), "fit_s": round(cost.fit_s, 2),
                                                                 "peak_mb": round(cost.peak_bytes / 2**20)}})
            print(json.dumps(rows[-1]), flush=True)
    document = {
        "command": "python benchmarks/costs.py " + " ".join(sys.argv[1:]),
        "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]},
        "notes": "threads=2; the machine was shared with other jobs (see loadavg), so times are upper bounds",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
