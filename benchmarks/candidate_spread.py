"""How much an algorithm's later hyper-parameter candidates add over its first, per data set: the evidence for
dropping, after its first candidate, an algorithm that validates far below the best one so far (training/auto.py).

For every algorithm of `auto`'s default list, tune() on each data set's tenants (the same hold-out `auto` uses)
and record each candidate's validation NDCG@10 and seconds. Reports the largest relative gain of a later
candidate over the first, and for a few drop margins whether dropping would have changed `auto`'s best single
algorithm and how much tuning time it would have saved. Writes benchmarks/results/candidate_spread.json.

    .venv/bin/python benchmarks/candidate_spread.py --data sample ml-100k synthetic-5k
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from ml_service.config import Settings  # noqa: E402
from ml_service.data.load import load_tenant  # noqa: E402
from ml_service.demo.run import SAMPLE_DIR  # noqa: E402
from ml_service.models import registry  # noqa: E402
from ml_service.source.folder import FolderSource  # noqa: E402
from ml_service.training.auto import DEFAULT_CANDIDATES  # noqa: E402
from ml_service.training.context import TrainContext  # noqa: E402
from ml_service.training.tune import tune  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "candidate_spread.json"
MARGINS = (0.03, 0.05, 0.1)


def export_of(name: str) -> Path:
    if name == "sample":
        return SAMPLE_DIR
    if name == "synthetic-5k":
        from datasets import synthetic_export

        return synthetic_export(Path("/tmp/ml-candidate-spread/synthetic-5k"), users=2000, items=5000, interactions=60_000)
    from datasets import dataset

    return dataset(name)


def tenant_rows(data_name: str, tenant: str, data, protocol: str) -> dict:  # type: ignore[no-untyped-def]
    rows = {}
    for name in ("popular", *DEFAULT_CANDIDATES):
        if name in rows:
            continue
        algorithm = registry.get(name)
        supports = getattr(algorithm, "supports", None)
        if supports is not None and not supports(data)[0]:
            continue
        started = time.monotonic()
        try:
            # the service's defaults (identity feature columns on), 2 threads, a budget that never stops a fit
            ctx = replace(TrainContext.of(data, Settings()), threads=2, budget_s=3600, protocol=protocol)
            result = tune(algorithm, ctx)
        except Exception as exc:  # e.g. too many items for a dense model
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        seconds = time.monotonic() - started
        scores = [float(c["ndcg@10"]) for c in result.candidates]
        rows[name] = {"scores": [round(s, 6) for s in scores], "seconds": round(seconds, 2), "fits": result.fits}
        print(data_name, tenant, protocol, name, rows[name], flush=True)
    return rows


def analyse(rows: dict) -> dict:
    scored = {n: r for n, r in rows.items() if "scores" in r and r["scores"]}
    gains = {n: max(r["scores"]) / r["scores"][0] - 1.0 if r["scores"][0] > 0 else 0.0 for n, r in scored.items()}
    best_single = max(scored, key=lambda n: max(scored[n]["scores"]))
    out: dict = {"best_single": best_single, "later_candidate_gain": {n: round(g, 4) for n, g in gains.items()}}
    order = ["popular"] + [n for n in scored if n != "popular"]  # auto tries popular first
    total = sum(r["seconds"] for r in scored.values())
    for margin in MARGINS:
        bar, kept, saved, dropped = 0.0, {}, 0.0, []
        for name in order:
            first = scored[name]["scores"][0]
            if name != "popular" and bar > 0 and first < bar * (1 - margin) and len(scored[name]["scores"]) > 1:
                kept[name] = first  # dropped after its first candidate
                dropped.append(name)
                saved += scored[name]["seconds"] * (1 - 1 / len(scored[name]["scores"]))
            else:
                kept[name] = max(scored[name]["scores"])
            bar = max(bar, kept[name])
        choice = max(kept, key=lambda n: kept[n])
        out[f"drop_{margin:g}"] = {"best_single": choice, "same_choice": choice == best_single,
                                   "dropped": dropped, "score_lost": round(max(max(r["scores"]) for r in scored.values()) - kept[choice], 6),
                                   "tuning_seconds_saved": round(saved, 1), "tuning_seconds": round(total, 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["sample", "ml-100k"])
    parser.add_argument("--protocols", nargs="+", default=["random", "latest"])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results = []
    for data_name in args.data:
        snapshot = FolderSource(export_of(data_name)).fetch()
        try:
            for tenant in snapshot.tenants:
                data = load_tenant(snapshot.files(tenant))
                if data.n_users < 10 or data.n_items < 10:
                    continue
                for protocol in args.protocols:
                    rows = tenant_rows(data_name, tenant, data, protocol)
                    results.append({"data": data_name, "tenant": tenant, "protocol": protocol, "users": data.n_users,
                                    "items": data.n_items, "interactions": len(data.interactions), "algorithms": rows,
                                    "analysis": analyse(rows)})
        finally:
            snapshot.cleanup()
    document = {
        "command": "python benchmarks/candidate_spread.py " + " ".join(sys.argv[1:]),
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "margins": list(MARGINS),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
