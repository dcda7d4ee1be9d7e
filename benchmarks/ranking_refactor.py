"""Ranking refactor: in-process /user-items and /similar-items ranking and the offline evaluation, old code vs new.

    .venv/bin/python benchmarks/ranking_refactor.py --old-src /work/main/src --rounds 6

Each measurement runs in a fresh subprocess with PYTHONPATH = the source tree under test (`--old-src`, the code
before the refactor, or this tree's src/), alternating old/new and new/old round by round (ABBA...), so load
from other work on a shared machine falls on both alike; the result is the median over rounds of each process's
own median (the served calls are also timed in process CPU time, less sensitive to the load). Every process builds the same seeded models: the serving model of benchmarks/serving.py (in-process
part, `in_process(..., served=True)`: median µs per call through TenantIndex, as the API calls it, and through
the plain functions) and a synthetic tenant (demo/synthetic.make_tenant) with a random factor model, whose
training/metrics.evaluate is timed with three item types, with one item type (the whole score block ranked at
once), and with seen_policy "demote". The old and new processes must return identical evaluation results and
identical served lists, or the run fails. Writes benchmarks/results/ranking_refactor.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NEW_SRC = HERE.parent / "src"


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One process's measurements of the ml_service found on PYTHONPATH."""
    import ml_service
    from ml_service.demo.synthetic import make_tenant
    from ml_service.models.base import model_for
    from ml_service.serving import TenantIndex
    from ml_service.training.metrics import evaluate
    from ml_service.training.split import holdout_split

    sys.path.insert(0, str(HERE))
    from serving import build_model, in_process  # benchmarks/serving.py, the same file for both trees

    out: dict[str, Any] = {"ml_service": str(Path(ml_service.__file__).parent)}
    model, _ = build_model(args.serve_users, args.serve_items, args.factors)
    out["serving"] = in_process(model, repeats=args.repeats, served=True)
    index = TenantIndex("0", "bench", model)
    names = ("container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist")
    rng = np.random.default_rng(5)
    user_calls = [(str(u + 1), names[j % 5], 10) for j, u in enumerate(rng.integers(0, model.n_users, 500))]
    similar_calls = [(model.item_ids[i], 10) for i in rng.integers(0, model.n_items, 500)]
    out["serving"]["served_user_items_cpu_us"] = _cpu_per_call(index.rank_user, user_calls)
    out["serving"]["served_similar_items_cpu_us"] = _cpu_per_call(index.rank_similar, similar_calls)
    lists = [index.rank_user(str(u + 1), names[u % 5], 10) for u in range(0, model.n_users, 97)]
    lists += [index.rank_similar(model.item_ids[i], 10) for i in range(0, model.n_items, 31)]
    out["served_lists_sha256"] = hashlib.sha256(json.dumps(lists).encode()).hexdigest()

    data = make_tenant(n_users=args.eval_users, n_items=args.eval_items, seed=3, per_user=args.per_user)
    split = holdout_split(data, seed=3)
    rng = np.random.default_rng(3)
    eval_model = model_for(
        data, "random-factors",
        user_factors=rng.normal(size=(data.n_users, args.factors)).astype(np.float32),
        item_factors=rng.normal(size=(data.n_items, args.factors)).astype(np.float32),
        user_biases=rng.normal(size=data.n_users).astype(np.float32),
        item_biases=rng.normal(size=data.n_items).astype(np.float32),
        positives=data.positive_matrix(split.train),
        user_cold=rng.random(data.n_users) < 0.05,
        popularity=rng.random(data.n_items).astype(np.float32),
    )
    one_type = model_for(data, "random-factors", **{
        name: getattr(eval_model, name) for name in ("user_factors", "item_factors", "user_biases", "item_biases",
                                                     "positives", "user_cold", "popularity")
    })
    one_type.item_types = np.zeros(data.n_items, np.int8)
    cases = {"evaluate_3_types": (eval_model, "exclude"), "evaluate_1_type": (one_type, "exclude"),
             "evaluate_demote": (eval_model, "demote")}
    for name, (case_model, policy) in cases.items():
        seconds, result = [], None
        for _ in range(args.eval_repeats):
            started = time.perf_counter()
            result = evaluate(case_model, data, split, seen_policy=policy)
            seconds.append(time.perf_counter() - started)
        out[name] = {"median_s": round(statistics.median(seconds), 4), "result": result}
    return out


def _load(name: str, path: Path) -> Any:
    """A module from a file under its own name (the original code beside this tree's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def paired(args: argparse.Namespace) -> dict[str, Any]:
    """Old and new code in ONE process, alternating block by block on the same calls: the other work's load falls
    on both within milliseconds, so the per-block ratio new/old is far steadier than separate processes' times."""
    import ml_service.ranking  # noqa: F401  (this tree's package, imported before the old module is swapped in)
    import ml_service.serving as new_serving
    import ml_service.training.metrics as new_metrics

    old_root = args.old_src.resolve() / "ml_service"
    saved = sys.modules["ml_service.ranking"]
    sys.modules["ml_service.ranking"] = _load("old_ml_service_ranking", old_root / "ranking.py")
    try:  # the old serving and metrics bind the old ranking; everything else they import is unchanged code
        old_serving = _load("old_ml_service_serving", old_root / "serving.py")
        old_metrics = _load("old_ml_service_metrics", old_root / "training" / "metrics.py")
    finally:
        sys.modules["ml_service.ranking"] = saved
    sys.path.insert(0, str(HERE))
    from serving import build_model

    from ml_service.demo.synthetic import make_tenant
    from ml_service.models.base import model_for
    from ml_service.training.split import holdout_split

    model, _ = build_model(args.serve_users, args.serve_items, args.factors)
    indexes = {"old": old_serving.TenantIndex("0", "b", model), "new": new_serving.TenantIndex("0", "b", model)}
    names = ("container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist")
    rng = np.random.default_rng(7)
    user_calls = [(str(u + 1), names[j % 5], 10) for j, u in enumerate(rng.integers(0, model.n_users, 200))]
    similar_calls = [(model.item_ids[i], 10) for i in rng.integers(0, model.n_items, 200)]
    for call in user_calls:
        assert indexes["old"].rank_user(*call) == indexes["new"].rank_user(*call)
    for call in similar_calls:
        assert indexes["old"].rank_similar(*call) == indexes["new"].rank_similar(*call)
    out: dict[str, Any] = {}
    for name, method, calls in (("served_user_items", "rank_user", user_calls), ("served_similar_items", "rank_similar", similar_calls)):
        times: dict[str, list[float]] = {"old": [], "new": []}
        for block in range(args.paired_blocks):
            for variant in (("old", "new") if block % 2 == 0 else ("new", "old")):
                fn = getattr(indexes[variant], method)
                started = time.process_time()
                for call in calls:
                    fn(*call)
                times[variant].append((time.process_time() - started) / len(calls) * 1e6)
        out[name + "_cpu_us"] = _paired_summary(times)

    data = make_tenant(n_users=args.eval_users, n_items=args.eval_items, seed=3, per_user=args.per_user)
    split = holdout_split(data, seed=3)
    rng = np.random.default_rng(3)
    eval_model = model_for(
        data, "random-factors",
        user_factors=rng.normal(size=(data.n_users, args.factors)).astype(np.float32),
        item_factors=rng.normal(size=(data.n_items, args.factors)).astype(np.float32),
        user_biases=rng.normal(size=data.n_users).astype(np.float32),
        item_biases=rng.normal(size=data.n_items).astype(np.float32),
        positives=data.positive_matrix(split.train), user_cold=rng.random(data.n_users) < 0.05,
        popularity=rng.random(data.n_items).astype(np.float32),
    )
    evaluators = {"old": old_metrics.evaluate, "new": new_metrics.evaluate}
    for policy in ("exclude", "demote"):
        times = {"old": [], "new": []}
        results = {}
        for round_ in range(args.paired_evaluations):
            for variant in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
                started = time.process_time()
                results[variant] = evaluators[variant](eval_model, data, split, seen_policy=policy)
                times[variant].append(time.process_time() - started)
            assert results["old"] == results["new"], "evaluation results differ"
        out[f"evaluate_3_types_{policy}_cpu_s"] = _paired_summary(times)
    return out


def _paired_summary(times: dict[str, list[float]]) -> dict[str, Any]:
    ratios = [new / old for old, new in zip(times["old"], times["new"])]
    return {"old": round(statistics.median(times["old"]), 4), "new": round(statistics.median(times["new"]), 4),
            "median_ratio_new_over_old": round(statistics.median(ratios), 3),
            "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else ratios}


def _cpu_per_call(fn: Any, calls: list[tuple[Any, ...]], blocks: int = 9) -> float:
    """Median over blocks of the process CPU µs per call: less sensitive than wall time to other work's load."""
    per_call = []
    for _ in range(blocks):
        started = time.process_time()
        for call in calls:
            fn(*call)
        per_call.append((time.process_time() - started) / len(calls) * 1e6)
    return round(statistics.median(per_call), 2)


def run_one(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", *_sizes(args)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["ml_service"]).resolve() != (src / "ml_service").resolve():
        raise RuntimeError(f"PYTHONPATH={src} imported {result['ml_service']}")
    return result


def _sizes(args: argparse.Namespace) -> list[str]:
    return [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in
            ("serve_users", "serve_items", "factors", "repeats", "eval_users", "eval_items", "per_user", "eval_repeats")]


METRICS = {  # name in the summary: path in a worker's output
    "served_user_items_us": ("serving", "served_user_items_us"),
    "served_similar_items_us": ("serving", "served_similar_items_us"),
    "served_user_items_cpu_us": ("serving", "served_user_items_cpu_us"),
    "served_similar_items_cpu_us": ("serving", "served_similar_items_cpu_us"),
    "plain_rank_user_us": ("serving", "user_items_us"),
    "plain_rank_similar_us": ("serving", "similar_items_us"),
    "floor_item_vectors_pass_us": ("serving", "floor_item_vectors_pass_us"),
    "evaluate_3_types_s": ("evaluate_3_types", "median_s"),
    "evaluate_1_type_s": ("evaluate_1_type", "median_s"),
    "evaluate_demote_s": ("evaluate_demote", "median_s"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-src", type=Path, default=Path("/work/main/src"), help="src/ of the code before the refactor")
    parser.add_argument("--rounds", type=int, default=6, help="old+new process pairs, order alternating")
    parser.add_argument("--serve-users", type=int, default=50_000)
    parser.add_argument("--serve-items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2000, help="calls per in-process serving median")
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--eval-items", type=int, default=3_000)
    parser.add_argument("--per-user", type=int, default=30)
    parser.add_argument("--eval-repeats", type=int, default=2)
    parser.add_argument("--paired-blocks", type=int, default=200, help="alternating blocks of 200 served calls (paired part)")
    parser.add_argument("--paired-evaluations", type=int, default=8, help="alternating evaluations per policy (paired part)")
    parser.add_argument("--paired-only", action="store_true",
                        help="run only the paired in-process part and add it to an existing --out file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "ranking_refactor.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.paired_only:
        result = json.loads(args.out.read_text())
        result["paired"] = paired(args)
        result["paired_command"] = "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:])
        result["paired_finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["paired"], indent=2))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    sources = {"old": args.old_src.resolve(), "new": NEW_SRC}
    for round_ in range(args.rounds):
        for variant in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
            runs[variant].append(run_one(sources[variant], args))
            print(round_, variant, {m: _get(runs[variant][-1], p) for m, p in METRICS.items()}, flush=True)
    for variant in ("old", "new"):  # every process computes the same lists and metrics
        first = runs[variant][0]
        for other in runs[variant][1:] + runs["new" if variant == "old" else "old"]:
            assert other["served_lists_sha256"] == first["served_lists_sha256"], "served lists differ"
            for case in ("evaluate_3_types", "evaluate_1_type", "evaluate_demote"):
                assert other[case]["result"] == first[case]["result"], f"{case} results differ"
    summary = {}
    for metric, path in METRICS.items():
        old = statistics.median(_get(r, path) for r in runs["old"])
        new = statistics.median(_get(r, path) for r in runs["new"])
        summary[metric] = {"old": old, "new": new, "new_over_old": round(new / old, 3),
                           "old_runs": [_get(r, path) for r in runs["old"]], "new_runs": [_get(r, path) for r in runs["new"]]}
    result = {
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "old_src": str(sources["old"]), "new_src": str(sources["new"]), "rounds": args.rounds,
        "sizes": {name: getattr(args, name) for name in ("serve_users", "serve_items", "factors", "repeats", "eval_users",
                                                         "eval_items", "per_user", "eval_repeats")},
        "identical_results": True,
        "evaluate_ndcg@10": runs["new"][0]["evaluate_3_types"]["result"]["ndcg@10"],
        "summary": summary,
        "notes": "BLAS limited to 1 thread per process; the machine was shared with other work (medians of "
                 "interleaved rounds).",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for metric, values in summary.items():
        print(f"{metric}: old {values['old']} new {values['new']} new/old {values['new_over_old']}")
    return 0


def _get(run: dict[str, Any], path: tuple[str, str]) -> float:
    return float(run[path[0]][path[1]])


if __name__ == "__main__":
    raise SystemExit(main())
