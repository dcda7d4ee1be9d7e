"""Ingest benchmark: pull + parse + features of a 200k users x 20k items x 5M interactions export from the simulator.

    .venv/bin/python benchmarks/ingest.py                      # the issue's scale
    .venv/bin/python benchmarks/ingest.py --users 20000 --items 3000 --interactions 500000   # a quick one

The export is made once by the project's generator (cached in benchmarks/.cache, not timed), served by the Totara
simulator over real HTTP on 127.0.0.1, pulled by the HTTP source into a staging folder, parsed by load_tenant and
turned into hybrid features (the most expensive mode). Peak RSS is this process's maximum resident set size.
Writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--mode", default="hybrid", choices=("mf", "partial", "hybrid"))
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = parser.parse_args(argv)

    from datasets import CACHE, synthetic_export

    from ml_service.config import Settings
    from ml_service.data.features import build_features
    from ml_service.data.load import load_tenant
    from ml_service.demo.simulator import TotaraSimulator
    from ml_service.source.totara_http import TotaraHttpSource

    started = time.monotonic()
    folder = synthetic_export(
        CACHE / f"export-{args.users}x{args.items}x{args.interactions}",
        users=args.users, items=args.items, interactions=args.interactions, tenants=0,
    )
    generate_s = time.monotonic() - started
    sizes = {p.name: p.stat().st_size for p in folder.glob("*_0.csv")}
    key = "bench-key"
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, TotaraSimulator(folder, key, port=0) as simulator:
        settings = Settings(totara_url=simulator.url, totara_key=key, models_dir=Path(tmp) / "models",
                            logs_dir=Path(tmp) / "logs")
        t0 = time.monotonic()
        snapshot = TotaraHttpSource(settings, Path(tmp) / "staging").fetch()
        timings["pull_s"] = time.monotonic() - t0
        try:
            t0 = time.monotonic()
            data = load_tenant(snapshot.files("0"))
            timings["parse_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            features = build_features(data, args.mode)
            timings["features_s"] = time.monotonic() - t0
        finally:
            snapshot.cleanup()
    total = sum(timings.values())
    rows = data.report.rows_read
    result = {
        "command": "python benchmarks/ingest.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scale": {"users": data.n_users, "items": data.n_items, "interactions_kept": len(data.interactions)},
        "file_bytes": sizes,
        "rows_read": rows,
        "generate_s_untimed": round(generate_s, 1),
        **{k: round(v, 2) for k, v in timings.items()},
        "total_s": round(total, 2),
        "rows_per_s": round(sum(rows.values()) / total),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "features": {"mode": args.mode,
                     "user": list(features.user.shape) if features.user is not None else None,
                     "item": list(features.item.shape) if features.item is not None else None},
        "goal": "total under 60 s and peak RSS under 4 GB",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
