"""Recency-weighted item-item histories, before vs after, on both hold-outs and both internal validations.

    .venv/bin/python benchmarks/recency.py --before <commit> [--datasets ml-100k] [--algorithms knn ease auto]

Runs benchmarks/quality.py (the service path: Totara export, per-type lists, the seeded 20 % hold-out) for the
code at <commit> (a `git archive` of its src/ on PYTHONPATH) and for the working tree, each hold-out (`latest`,
`random`) with the service's default internal validation `latest`, and the random hold-out also with `random`
validation (validation matching the hold-out). Runs already in the cache (benchmarks/.cache/recency/) are
reused (quality.py --resume). Writes benchmarks/results/recency.json: one row per (code, data set, hold-out,
validation, algorithm), with the quality row's NDCG@10, recall@10, choice and training seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).parent
CACHE = HERE / ".cache" / "recency"
RESULT = HERE / "results" / "recency.json"
# (hold-out, internal validation) pairs: the service default on both hold-outs, then validation matching the hold-out
SETTINGS = (("latest", "latest"), ("random", "latest"), ("random", "random"))
KEPT = ("ndcg@10", "recall@10", "auc", "train_seconds", "peak_rss_mb", "choice", "params", "candidate_scores")


def source_of(commit: str) -> Path:
    """src/ of `commit`, unpacked once into the cache."""
    folder = CACHE / f"src-{commit}"
    if not (folder / "src").exists():
        archive = subprocess.run(["git", "archive", commit, "src"], cwd=HERE.parent, check=True, capture_output=True).stdout
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder)
    return folder / "src"


def run_quality(code: str, src: Path | None, dataset: str, holdout: str, validation: str, algorithms: list[str]) -> list[dict]:
    """quality.py's rows for one setting, cached per (code, data set, hold-out, validation)."""
    out = CACHE / f"{code}-{dataset}-{holdout}-v{validation}.json"
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    command = [sys.executable, str(HERE / "quality.py"), "--resume", "--datasets", dataset, "--protocols", holdout,
               "--validation", validation, "--algorithms", *algorithms, "--out", str(out)]
    subprocess.run(command, check=True, env=env)
    return json.loads(out.read_text())["results"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit before recency weighting")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--algorithms", nargs="+", default=["knn", "ease", "seq_edlae", "auto"])
    parser.add_argument("--settings", nargs="+", default=[f"{h}/{v}" for h, v in SETTINGS],
                        help="hold-out/validation pairs to run")
    parser.add_argument("--after", default="the working tree", help="what the working tree is (for the report)")
    parser.add_argument("--references", nargs="*", type=Path, default=[],
                        help="quality.py result files whose reference-* rows are kept for the ratio (they take an hour)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for dataset in args.datasets:
        for setting in args.settings:
            holdout, validation = setting.split("/")
            for code, src in (("before", source_of(args.before)), ("after", None)):
                for row in run_quality(code, src, dataset, holdout, validation, args.algorithms):
                    if row.get("algorithm") not in args.algorithms and row.get("algorithm", "").removesuffix("+id") not in args.algorithms:
                        continue
                    rows.append({"code": code, "dataset": dataset, "holdout": holdout, "validation": validation,
                                 "algorithm": row["algorithm"]} | {key: row[key] for key in KEPT if key in row}
                                | ({"error": row["error"][-300:]} if "error" in row else {}))
    previous = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    fresh = {(r["code"], r["dataset"], r["holdout"], r["validation"], r["algorithm"]) for r in rows}
    kept = [r for r in previous if (r["code"], r["dataset"], r["holdout"], r["validation"], r["algorithm"]) not in fresh]
    references = json.loads(args.out.read_text()).get("references", []) if args.out.exists() else []
    for path in args.references:
        for row in json.loads(path.read_text())["results"]:
            if row.get("algorithm", "").startswith("reference-") and "ndcg@10" in row:
                references = [r for r in references if (r["dataset"], r["protocol"], r["algorithm"])
                              != (row["dataset"], row["protocol"], row["algorithm"])]
                references.append({key: row[key] for key in ("dataset", "protocol", "algorithm", "ndcg@10",
                                                             "recall@10", "train_seconds") if key in row}
                                  | {"from": str(path.name)})
    payload = {
        "command": "python benchmarks/recency.py " + " ".join(sys.argv[1:]),
        "before": args.before,
        "after": args.after,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "notes": "train_seconds are wall time on the shared 2-core machine; quality does not depend on them "
                 "except through auto's time budget (600 s), which none of these runs reached",
        "rows": kept + rows,
        "references": references,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}: {len(payload['rows'])} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
