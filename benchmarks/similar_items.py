"""Similar-items benchmark: does an item a learner liked have one of the learner's held-out items among its 10 similar?

    .venv/bin/python benchmarks/similar_items.py --datasets ml-100k synthetic-20k

Per data set, 20 % of each qualifying learner's positives are held out (seeded random); models are trained on the
rest. For every (learner, liked training item) pair, the item's 10 most similar items are taken exactly as
/similar-items serves them (ranking.rank_similar: same family, never the target) and the pair is a hit when one of
the learner's held-out items is among them. Baselines: 10 random items of the family, the 10 most popular items
of the family, and pure content similarity (topics + text, what new content gets). Writes
benchmarks/results/similar_items.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results"
MODELS = ("als", "mf")  # their own item vectors, for comparison with what the service serves
K = 10


def evaluate_pairs(data, split, similar, *, max_pairs_per_user: int = 20, seed: int = 0) -> dict:  # type: ignore[no-untyped-def]
    """Hit rate@K over (learner, liked item) pairs, with `similar(item) -> list of item indices`."""
    rng = np.random.default_rng(seed)
    train_pos = data.positive_matrix(split.train).tocsr()
    test = split.test.subset(split.test.rating == 1)
    held = data.interaction_matrix(test).tocsr()
    hits = pairs = 0
    for user in np.unique(test.user):
        liked = train_pos.indices[train_pos.indptr[user]:train_pos.indptr[user + 1]]
        if liked.size > max_pairs_per_user:
            liked = rng.choice(liked, max_pairs_per_user, replace=False)
        targets = set(held.indices[held.indptr[user]:held.indptr[user + 1]].tolist())
        for item in liked:
            pairs += 1
            hits += bool(targets.intersection(similar(int(item))))
    return {"pairs": pairs, f"hit_rate@{K}": round(hits / pairs, 5) if pairs else 0.0}


def _measure(data, split, model, fam, families) -> dict:  # type: ignore[no-untyped-def]
    """Hit rate of the lists rank_similar serves, and the share of the catalogue they reach."""
    from ml_service.ranking import rank_similar

    reached: set[int] = set()

    def similar(item: int) -> list[int]:
        ranked = [j for j, _ in rank_similar(model, item, K, family_items=fam[int(families[item])])]
        reached.update(ranked)
        return ranked

    row = evaluate_pairs(data, split, similar)
    return {**row, "coverage": round(len(reached) / data.n_items, 4)}


def run(dataset_name: str, threads: int) -> list[dict]:
    from datasets import dataset

    from ml_service.data.features import item_content_vectors
    from ml_service.data.load import load_tenant
    from ml_service.data.tenant import TYPE_FAMILY
    from ml_service.models import registry
    from ml_service.source.folder import FolderSource
    from ml_service.training.context import TrainContext
    from ml_service.training.split import holdout_split
    from ml_service.training.tune import fit_final, tune

    data = load_tenant(FolderSource(dataset(dataset_name)).fetch().files("0"))
    split = holdout_split(data, 0.2, seed=2026, protocol="random")
    train = dataclasses.replace(data, interactions=split.train)
    families = np.asarray(TYPE_FAMILY)[np.asarray(data.items.type_index)]
    family_items = {int(f): np.flatnonzero(families == f) for f in np.unique(families)}
    rng = np.random.default_rng(7)
    popularity = np.bincount(split.train.item[split.train.rating == 1], minlength=data.n_items)

    def random_similar(item: int) -> list[int]:
        pool = family_items[int(families[item])]
        pool = pool[pool != item]
        return rng.choice(pool, min(K, pool.size), replace=False).tolist()

    def popular_similar(item: int) -> list[int]:
        pool = family_items[int(families[item])]
        pool = pool[pool != item]
        return pool[np.argsort(-popularity[pool], kind="stable")[:K]].tolist()

    rows = []
    for name, similar in (("random", random_similar), ("popular", popular_similar)):
        reached: set[int] = set()

        def tracked(item: int, similar=similar, reached=reached) -> list[int]:  # type: ignore[no-untyped-def]
            ranked = similar(item)
            reached.update(ranked)
            return ranked

        row = evaluate_pairs(data, split, tracked)
        rows.append({"dataset": dataset_name, "method": name, **row, "coverage": round(len(reached) / data.n_items, 4)})
    from ml_service.models.similarity import POPULARITY_EXPONENT, similar_item_vectors

    content = item_content_vectors(data)
    fam = {f: items for f, items in family_items.items()}
    base = fit_final(registry.get("popular"), {}, TrainContext(train, threads=threads, seed=42))  # array carrier
    variants = {
        "content": (content, np.zeros(data.n_items, bool)),
        "cooccurrence-cosine": similar_item_vectors(data, split.train, seed=42, exponent=0.0),
        f"served (co-occurrence x popularity^{POPULARITY_EXPONENT})": similar_item_vectors(data, split.train, seed=42),
    }
    for name, (vectors, warm) in variants.items():
        extras = dataclasses.replace(base.extras, similarity_vectors=vectors, item_warm=warm, content_vectors=content)
        model = dataclasses.replace(base, extras=extras)
        rows.append({"dataset": dataset_name, "method": name, **_measure(data, split, model, fam, families)})
    for name in MODELS:
        started = time.monotonic()
        algorithm = registry.get(name)
        tuned = tune(algorithm, TrainContext(train, threads=threads, seed=42, protocol="latest"))
        model = fit_final(algorithm, tuned.params, TrainContext(train, threads=threads, seed=42, features=tuned.features))
        model.extras = dataclasses.replace(model.extras, similarity_vectors=own_item_vectors(model), content_vectors=content)
        rows.append({"dataset": dataset_name, "method": f"{name} item vectors",
                     "train_seconds": round(time.monotonic() - started, 1), **_measure(data, split, model, fam, families)})
    for row in rows:
        print(f"{row['dataset']:14s} {row['method']:44s} hit_rate@{K}={row[f'hit_rate@{K}']:.4f} "
              f"coverage={row.get('coverage', '')} pairs={row['pairs']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic-20k"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "similar_items.json")
    args = parser.parse_args(argv)
    rows = [row for name in args.datasets for row in run(name, args.threads)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": "python benchmarks/similar_items.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": rows,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def own_item_vectors(model: Any) -> np.ndarray:
    """The model's own item vectors, as algorithms served them before similar items came from co-occurrence:
    normalised item factors, or the co-occurrence embedding of an item-item model's history."""
    from ml_service.models.fields import cooccurrence_embedding, normalise_rows
    from ml_service.models.parts import FactorModel

    part = model.scoring
    if isinstance(part, FactorModel):
        factors = np.array(part.item_factors, dtype=np.float32)
        factors[~np.asarray(model.extras.item_warm)] = 0.0
        return normalise_rows(factors)
    return cooccurrence_embedding(part.history, np.asarray(model.extras.item_warm), 42)
