"""Tuning time before/after the typed model parts: `ml-service train` per algorithm on one export, two source trees.

    nice -n 10 .venv/bin/python benchmarks/tuning_time.py --old-src /tmp/h10-before/src --rounds 3

Every round trains each algorithm once with the old tree and once with this tree's src/ (order alternating, so a
shared machine's load falls on both alike), each a fresh `python -m ml_service train --source <export> --algorithm
<name> --force` process with PYTHONPATH = the tree, anytime publishing off and one thread. The tuning seconds are
what the published model records (info.tuning.seconds: tune() over every candidate, wall time), and the training
process's CPU seconds (user + system: steadier on a shared machine); the run fails when old and new
choose different parameters or validate differently. Writes benchmarks/results/tuning_time.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
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
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of the whole training process: far less sensitive than wall time to a shared machine's load
        out: dict[str, Any] = {"_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
        for meta_path in sorted(Path(tmp, "models").rglob("meta.json")):
            meta = json.loads(meta_path.read_text())
            tenant = meta["tenant"]
            out[tenant] = {"tuning_s": meta["info"].get("tuning", {}).get("seconds"),
                           "params": meta["params"], "ndcg@10": meta["metrics"].get("ndcg@10")}
        return out


def tune_cpu_worker(source: Path, algorithm: str, repeats: int) -> dict[str, Any]:
    """In one process of the tree on PYTHONPATH: tune() of `algorithm` on tenant 0, `repeats` times; CPU seconds each."""
    import inspect
    import time

    from ml_service.data.load import load_tenant
    from ml_service.models import registry
    from ml_service.source.folder import FolderSource
    from ml_service.training import tune as tune_module

    snapshot = FolderSource(source, force=True).fetch()
    data = load_tenant(snapshot.files(snapshot.tenants[0]))
    times, chosen = [], None
    for _ in range(repeats):
        started = time.process_time()
        if "ctx" in inspect.signature(tune_module.tune).parameters:  # since the typed parts: one TrainContext
            from ml_service.training.context import TrainContext

            result = tune_module.tune(registry.get(algorithm), TrainContext(data, seed=42, threads=1))
        else:
            result = tune_module.tune(registry.get(algorithm), data, threads=1, seed=42)
        times.append(time.process_time() - started)
        chosen = (result.params, result.validation_metrics["ndcg@10"])
    snapshot.cleanup()
    return {"cpu_s": times, "chosen": chosen}


def tune_cpu(trees: dict[str, Path], source: Path, algorithms: list[str], rounds: int, repeats: int) -> dict[str, Any]:
    """tune_cpu_worker in a fresh process per tree and round, order alternating; medians of every repeat."""
    out: dict[str, Any] = {}
    for algorithm in algorithms:
        cpu: dict[str, list[float]] = {"old": [], "new": []}
        chosen = {}
        for round_ in range(rounds):
            for variant in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
                env = {**os.environ, "PYTHONPATH": str(trees[variant]), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
                command = [sys.executable, __file__, "--worker", "--source", str(source), "--algorithms", algorithm,
                           "--repeats", str(repeats), "--old-src", str(trees["old"])]
                done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                cpu[variant] += result["cpu_s"]
                chosen[variant] = result["chosen"]
        print(algorithm, "tune() CPU s", {v: round(statistics.median(c), 3) for v, c in cpu.items()}, file=sys.stderr)
        out[algorithm] = {"old_s": round(statistics.median(cpu["old"]), 3), "new_s": round(statistics.median(cpu["new"]), 3),
                          "ratio_new_over_old": round(statistics.median(cpu["new"]) / statistics.median(cpu["old"]), 3),
                          "same_choice": chosen["old"] == chosen["new"], "old_runs": cpu["old"], "new_runs": cpu["new"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-src", type=Path, required=True, help="src/ of the code before the change")
    parser.add_argument("--source", type=Path, default=SAMPLE, help="an export folder (default: the sample export)")
    parser.add_argument("--algorithms", default="ease,knn,edlae,als,mf", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="tune() calls per process in the CPU part")
    parser.add_argument("--tune-cpu-only", action="store_true",
                        help="only the in-process tune() CPU part, added to an existing results file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(tune_cpu_worker(args.source, args.algorithms, args.repeats)))
        return 0
    if args.tune_cpu_only:
        path = RESULTS / "tuning_time.json"
        result = json.loads(path.read_text())
        result["tune_cpu"] = tune_cpu({"old": args.old_src.resolve(), "new": NEW_SRC}, args.source,
                                      args.algorithms.split(","), args.rounds, args.repeats)
        result["tune_cpu_command"] = shlex.join([Path(sys.executable).name, *sys.argv])
        result["tune_cpu_load_average"] = os.getloadavg()
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["tune_cpu"], indent=1))
        return 0
    trees = {"old": args.old_src.resolve(), "new": NEW_SRC}
    seconds: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    identical = True
    for round_ in range(args.rounds):
        for algorithm in args.algorithms.split(","):
            runs = {}
            for variant in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
                runs[variant] = train_once(trees[variant], args.source, algorithm)
                cpu.setdefault(algorithm, {"old": [], "new": []})[variant].append(round(runs[variant].pop("_cpu_s"), 3))
                total = sum(t["tuning_s"] or 0.0 for t in runs[variant].values())
                seconds.setdefault(algorithm, {"old": [], "new": []})[variant].append(total)
            for tenant, old in runs["old"].items():
                new = runs["new"].get(tenant, {})
                if (old["params"], old["ndcg@10"]) != (new.get("params"), new.get("ndcg@10")):
                    identical = False
                    print(f"DIFFERENT {algorithm} tenant {tenant}: {old} vs {new}", file=sys.stderr)
            print(algorithm, round_, {v: round(s[-1], 3) for v, s in seconds[algorithm].items()},
                  {v: c[-1] for v, c in cpu[algorithm].items()}, file=sys.stderr)
    summary = {
        name: {"old_s": round(statistics.median(v["old"]), 3), "new_s": round(statistics.median(v["new"]), 3),
               "ratio_new_over_old": round(statistics.median(v["new"]) / max(statistics.median(v["old"]), 1e-9), 3)}
        for name, v in seconds.items()
    }
    cpu_summary = {
        name: {"old_s": round(statistics.median(v["old"]), 3), "new_s": round(statistics.median(v["new"]), 3),
               "ratio_new_over_old": round(statistics.median(v["new"]) / max(statistics.median(v["old"]), 1e-9), 3)}
        for name, v in cpu.items()
    }
    result = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform()},
        "source": str(args.source), "rounds": args.rounds,
        "identical_params_and_validation": identical,
        "tuning_seconds_summed_over_tenants": summary,
        "training_process_cpu_seconds": cpu_summary,
        "runs": seconds,
        "cpu_runs": cpu,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tuning_time.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"tuning wall s": summary, "process cpu s": cpu_summary}, indent=1))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
