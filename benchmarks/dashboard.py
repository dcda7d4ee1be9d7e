"""Dashboard render time for a site of 100 tenants: each page fetched over HTTP from a real server, median and p95.

    .venv/bin/python benchmarks/dashboard.py [--tenants 100] [--versions 3] [--repeats 30] [--rounds 4]

Builds a store of `--tenants` tenants with `--versions` published versions each (small random factor models:
rendering cost depends on the tenants and versions listed, not on model size), a training log of 20 runs, then
times GET of every dashboard page with a logged-in session (client-measured: request sent to last byte read,
over loopback). Writes benchmarks/results/dashboard.json.

The first render of the overview after a start is also measured before and after its fix, in the same run,
`--rounds` times alternating, each on a freshly built app: "before" puts back the previous code path (every
version's integrity check and folder size through store.versions() for the sparklines, templates compiled by
the first request), "after" is the current code (meta.json only, templates compiled at start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import scipy.sparse as sp

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def small_model(seed: int, users: int = 200, items: int = 100):  # type: ignore[no-untyped-def]
    from ml_service.models.base import model_from_arrays

    rng = np.random.default_rng(seed)
    types = rng.integers(0, 5, items).astype(np.int8)
    positives = sp.random(users, items, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    positives.data[:] = 1.0
    return model_from_arrays(
        algorithm="als", user_ids=[str(u) for u in range(users)],
        item_ids=[f"{['container_course', 'container_workspace', 'engage_article', 'engage_microlearning', 'totara_playlist'][t]}{i}"
                  for i, t in enumerate(types)],
        item_types=types, user_factors=rng.standard_normal((users, 16)).astype(np.float32),
        item_factors=rng.standard_normal((items, 16)).astype(np.float32), positives=positives,
        popularity=rng.random(items).astype(np.float32), similarity_vectors=rng.standard_normal((items, 8)).astype(np.float32),
        metrics={"ndcg@10": float(rng.random() * 0.5), "recall@10": float(rng.random()), "coverage@10": float(rng.random())},
        info={"sizes": {"users": users, "items": items, "interactions": int(positives.nnz)}},
    )


class _BeforeHistory:
    """The overview's sparkline source before the fix: store.versions() (integrity check, folder size) per tenant."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store

    def of(self, tenant: str) -> list[float]:
        values = [(v.metrics or {}).get("ndcg@10") for v in reversed(self.store.versions(tenant))]
        return [float(v) for v in values if isinstance(v, (int, float))]


def compare_first_render(settings, store, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    """The overview's first render on a fresh app, the previous code path vs the current one, alternating."""
    from ml_service.api.app import create_app
    from tests.api.support import RunningServer

    times: dict[str, list[float]] = {"before": [], "after": []}
    for round_ in range(rounds):
        for variant in (("before", "after") if round_ % 2 == 0 else ("after", "before")):
            app = create_app(settings, store, refresh_interval_s=None)
            if variant == "before":
                app.state.admin.history = _BeforeHistory(store)
                app.state.admin.templates.env.cache.clear()  # compiled by the first request, as before
            server = RunningServer(app).start()
            try:
                with httpx.Client(base_url=server.url, timeout=30.0) as client:
                    assert client.post("/admin/login", data={"username": "admin", "password": "bench-password"}).status_code == 303
                    begun = time.perf_counter()
                    answer = client.get("/admin/")
                    times[variant].append(round((time.perf_counter() - begun) * 1000, 2))
                    assert answer.status_code == 200
            finally:
                server.stop()
            print(f"overview first render, {variant}: {times[variant][-1]:.1f} ms", flush=True)
    return {variant: {"median_ms": round(statistics.median(v), 2), "min_ms": min(v), "max_ms": max(v), "runs_ms": v}
            for variant, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4, help="before/after pairs of the overview's first render")
    parser.add_argument("--out", type=Path, default=RESULTS / "dashboard.json")
    args = parser.parse_args(argv)
    from ml_service.api.app import create_app
    from ml_service.config import Settings
    from ml_service.store import ModelStore
    from ml_service.training.logs import append_jsonl
    from tests.api.support import RunningServer, closed_port

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(totara_url=f"http://127.0.0.1:{closed_port()}", totara_key="bench-key", models_dir=root / "models",
                            logs_dir=root / "logs", admin_password="bench-password", keep_versions=max(5, args.versions))
        store = ModelStore(settings.recommender_dir, keep_versions=settings.keep_versions)
        started = time.perf_counter()
        for tenant in range(args.tenants):
            for version in range(args.versions):
                store.publish(str(tenant), small_model(tenant * 100 + version))
        store.write_status({str(t): {"state": "trained", "msg": "success"} for t in range(args.tenants)})
        for run in range(20):
            for tenant in range(args.tenants):
                append_jsonl(settings.training_jsonl, {"event": "tenant", "tenant": str(tenant), "state": "trained", "algorithm": "als",
                                                        "msg": "success", "at": time.time(), "seconds": {"load": 0.1, "train": 1.0, "publish": 0.1}})
            append_jsonl(settings.training_jsonl, {"event": "run", "ok": True, "seconds": 100.0, "at": time.time(),
                                                    "download": {"ok": True, "seconds": 1.0, "bytes": 1000}})
        build_s = time.perf_counter() - started
        first_render = compare_first_render(settings, store, args.rounds)
        server = RunningServer(create_app(settings, store, refresh_interval_s=None)).start()
        pages = ["/admin/", "/admin/tenants/50", "/admin/tenants/50/try?user=3", "/admin/tenants/50/try?item=container_course1",
                 "/admin/runs", "/admin/settings", "/admin/api"]
        timings: dict[str, dict[str, float]] = {}
        try:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                assert client.post("/admin/login", data={"username": "admin", "password": "bench-password"}).status_code == 303
                for page in pages:
                    begun = time.perf_counter()
                    client.get(page)  # the first render: templates compiled, caches filled
                    first_ms = (time.perf_counter() - begun) * 1000
                    times = []
                    for _ in range(args.repeats):
                        begun = time.perf_counter()
                        answer = client.get(page)
                        times.append((time.perf_counter() - begun) * 1000)
                        assert answer.status_code == 200, (page, answer.status_code)
                    times.sort()
                    timings[page] = {"first_ms": round(first_ms, 2), "median_ms": round(statistics.median(times), 2),
                                     "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2), "max_ms": round(times[-1], 2),
                                     "bytes": len(answer.content)}
                    print(f"{page:45s} median {timings[page]['median_ms']:7.2f} ms  p95 {timings[page]['p95_ms']:7.2f} ms", flush=True)
                after_publish = []
                for tenant in range(5):  # the overview right after a publish re-reads that tenant's versions only
                    store.publish(str(tenant), small_model(10_000 + tenant))
                    begun = time.perf_counter()
                    assert client.get("/admin/").status_code == 200
                    after_publish.append((time.perf_counter() - begun) * 1000)
                timings["/admin/ (right after a publish)"] = {
                    "first_ms": round(after_publish[0], 2), "median_ms": round(statistics.median(after_publish), 2),
                    "p95_ms": round(max(after_publish), 2), "max_ms": round(max(after_publish), 2), "bytes": 0}
                print(f"overview after a publish: {[round(t, 1) for t in after_publish]} ms", flush=True)
                rows = len(re.findall(r'class="tenant-row"', client.get("/admin/").text))
                assert rows == args.tenants, rows
        finally:
            server.stop()
    payload = {
        "command": "python benchmarks/dashboard.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "note": "shared with other jobs"},
        "site": {"tenants": args.tenants, "versions_per_tenant": args.versions, "training_log_runs": 20, "build_s": round(build_s, 1)},
        "method": "client-side time of GET over loopback to a real uvicorn server, logged-in session; first_ms = the first "
                  "render (cold caches), median/p95 over the repeats after it; 'right after a publish' = 5 publishes, each followed "
                  "by one overview render",
        "goal_ms": 200, "load_average": [round(x, 2) for x in os.getloadavg()], "first_render_overview": first_render,
        "pages": timings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
