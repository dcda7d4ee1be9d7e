"""Serving benchmark: wrk against `ml-service serve` for a 50k-user x 10k-item tenant, plus in-process scoring time.

    apt-get install wrk   # Debian's wrk 4.x
    .venv/bin/python benchmarks/serving.py

The model has the shapes of a real tenant (64 factors, biases, ~20 positives per user) with random values:
this measures serving speed, not quality. Each wrk run lasts `--seconds` (default 10 s, well inside the 30 s
token window: the Lua script sends a token signed just before the run, as Totara would within one second).
Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

RESULTS = Path(__file__).parent / "results"
LUA = r"""
local users = tonumber(os.getenv("BENCH_USERS"))
local items = tonumber(os.getenv("BENCH_ITEMS"))
local route = os.getenv("BENCH_ROUTE")
local types = {"container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist"}
wrk.headers["X-Totara-Time"] = os.getenv("BENCH_TIME")
wrk.headers["X-Totara-Ml-Key"] = os.getenv("BENCH_TOKEN")
wrk.headers["User-Agent"] = "TotaraBot/1.0"
local counter = 0
request = function()
  counter = counter + 1
  if route == "user-items" then
    local u = math.random(1, users)
    local t = types[math.random(1, 5)]
    return wrk.format("GET", "/user-items?totara_user_id=" .. u .. "&item_type=" .. t .. "&tenant=0&n_items=10")
  else
    local i = math.random(1, items)
    return wrk.format("GET", "/similar-items?totara_item_id=container_course" .. i .. "&tenant=0&n_items=10")
  end
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"errors\": %d, \"connect_errors\": %d, \"read_errors\": %d, \"write_errors\": %d, \"non2xx\": %d, \"timeouts\": %d, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, \"duration_s\": %.3f}\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.mean / 1000, summary.duration / 1e6))
end
"""


def build_model(n_users: int, n_items: int, k: int, seed: int = 1):  # type: ignore[no-untyped-def]
    """A FACTORS model of realistic shape with random values; ids are course ids 1..n (all container_course
    except a share of each type so per-type filtering does real work)."""
    import ml_service.models.base as base

    # model_from_arrays since the typed model parts; trees from before them (ranking_refactor.py --old-src) take
    # the arrays as TrainedModel fields
    make = getattr(base, "model_from_arrays", base.TrainedModel)
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 5, n_items).astype(np.int8)
    type_names = ("container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist")
    item_ids = [f"{type_names[t]}{i + 1}" for i, t in enumerate(types)]
    rows = np.repeat(np.arange(n_users), 20)
    cols = rng.integers(0, n_items, rows.size)
    positives = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    positives.sum_duplicates()
    positives.data[:] = 1
    item_factors = rng.normal(size=(n_items, k)).astype(np.float32)
    sim = item_factors / np.linalg.norm(item_factors, axis=1, keepdims=True)
    return make(
        algorithm="random-factors", user_ids=[str(u + 1) for u in range(n_users)], item_ids=item_ids, item_types=types,
        user_factors=rng.normal(size=(n_users, k)).astype(np.float32), item_factors=item_factors,
        user_biases=rng.normal(size=n_users).astype(np.float32), item_biases=rng.normal(size=n_items).astype(np.float32),
        positives=positives, user_cold=np.zeros(n_users, bool), popularity=rng.random(n_items).astype(np.float32),
        similarity_vectors=sim.astype(np.float32), item_warm=np.ones(n_items, bool),
    ), item_ids


def in_process(model, repeats: int = 2000, served: bool = False) -> dict:  # type: ignore[no-untyped-def]
    """Median time of rank_user / rank_similar vs the floor: one pass over the item vectors (a matrix-vector product).

    `served` adds the same medians through TenantIndex (per-type and per-family blocks, what the API calls).
    """
    from ml_service.ranking import rank_similar, rank_user
    from ml_service.serving import TenantIndex

    rng = np.random.default_rng(3)
    type_items = {t: np.flatnonzero(model.item_types == t) for t in range(5)}
    family = {t: np.flatnonzero(np.isin(model.item_types, [2, 3] if t in (2, 3) else [t])) for t in range(5)}

    def timeit(fn) -> float:  # type: ignore[no-untyped-def]
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return float(np.median(samples) * 1e6)

    V = np.asarray(model.item_factors)
    users = rng.integers(0, model.n_users, repeats * 4)
    items = rng.integers(0, model.n_items, repeats * 4)
    it = iter(range(repeats * 4))
    floor = timeit(lambda: V @ np.asarray(model.user_factors[users[next(it)]]))
    it = iter(range(repeats * 4))
    user_items = timeit(lambda: rank_user(model, int(users[(j := next(it))]), int(j % 5), 10, type_items=type_items[int(j % 5)]))
    it = iter(range(repeats * 4))
    similar = timeit(lambda: rank_similar(model, int(items[(j := next(it))]), 10, family_items=family[int(model.item_types[items[j]])]))
    result = {"floor_item_vectors_pass_us": round(floor, 1), "user_items_us": round(user_items, 1),
              "similar_items_us": round(similar, 1), "user_items_over_floor": round(user_items / floor, 2),
              "similar_items_over_floor": round(similar / floor, 2)}
    if served:
        index = TenantIndex("0", "bench", model)
        names = ("container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist")
        it = iter(range(repeats * 4))
        served_user = timeit(lambda: index.rank_user(model.user_ids[users[(j := next(it))]], names[j % 5], 10))
        it = iter(range(repeats * 4))
        served_similar = timeit(lambda: index.rank_similar(model.item_ids[items[next(it)]], 10))
        result.update({"served_user_items_us": round(served_user, 1), "served_similar_items_us": round(served_similar, 1),
                       "served_user_items_over_floor": round(served_user / floor, 2),
                       "served_similar_items_over_floor": round(served_similar / floor, 2)})
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, key: str, timeout: float = 60.0) -> None:
    import httpx

    from ml_service.auth import signed_headers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/user-items", params={"totara_user_id": "1", "item_type": "container_course",
                                                       "tenant": "0", "n_items": "5"}, headers=signed_headers(key), timeout=2)
            if r.status_code == 200 and r.json().get("success"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"service at {url} did not become ready")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (the server's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_wrk(url: str, key: str, route: str, concurrency: int, seconds: int, n_users: int, n_items: int, lua: Path) -> dict:
    from ml_service.auth import make_token

    stamp = str(int(time.time()))
    env = {**os.environ, "BENCH_USERS": str(n_users), "BENCH_ITEMS": str(n_items), "BENCH_ROUTE": route,
           "BENCH_TIME": stamp, "BENCH_TOKEN": make_token(stamp, key)}
    threads = min(concurrency, int(os.environ.get("BENCH_WRK_THREADS", "2")))  # wrk shares the 2 cores
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--latency",
                          "-s", str(lua), url], env=env, capture_output=True, text=True, check=True).stdout
    stats = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))  # type: ignore[union-attr]
    stats["requests_per_s"] = round(stats["requests"] / stats["duration_s"], 1)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    parser.add_argument("--served-scoring", action=argparse.BooleanOptionalAction, default=True,
                        help="also time scoring through TenantIndex (the blocks the API uses) in the in-process part")
    parser.add_argument("--metrics", choices=("on", "off", "both"), default="on",
                        help="Prometheus metrics in the server (ML_METRICS); both: two servers, wrk runs interleaved on/off")
    parser.add_argument("--rounds", type=int, default=3, help="with --metrics both: on/off pairs per route and concurrency")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for the in-process part (default 1: what each server worker uses)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    if args.metrics == "both":
        return compare_metrics(args, argv)
    from ml_service.store import ModelStore

    model, _ = build_model(args.users, args.items, args.factors)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    results: dict = {"in_process": {**in_process(model, served=args.served_scoring), "blas_threads": args.blas_threads},
                     "http": []}
    print("in-process:", results["in_process"], flush=True)
    key = "bench-" + os.urandom(8).hex()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = ModelStore(root / "models" / "recommender")
        store.publish("0", model)
        store.write_status({"0": {"state": "trained", "msg": "success"}})
        lua = root / "bench.lua"
        lua.write_text(LUA)
        for workers in args.workers:
            port = free_port()
            env = {**os.environ, "ML_TOTARA_URL": "http://127.0.0.1:9", "ML_TOTARA_KEY": key,
                   "ML_MODELS_DIR": str(root / "models"), "ML_LOGS_DIR": str(root / f"logs{workers}"),
                   "ML_BIND": f"127.0.0.1:{port}", "ML_WORKERS": str(workers), "ML_METRICS": "1" if args.metrics == "on" else "0"}
            server = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve", "--no-scheduler"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_ready(url, key)
                for route in ("user-items", "similar-items"):
                    run_wrk(url, key, route, 32, 3, args.users, args.items, lua)  # warm-up
                    for concurrency in args.concurrency:
                        stats = run_wrk(url, key, route, concurrency, args.seconds, args.users, args.items, lua)
                        row = {"workers": workers, "route": route, "concurrency": concurrency, **stats}
                        results["http"].append(row)
                        print(f"workers={workers} {route:13s} c={concurrency:3d} {stats['requests_per_s']:8.0f} req/s "
                              f"p50={stats['p50_ms']:.2f}ms p99={stats['p99_ms']:.2f}ms errors={stats['errors']} "
                              f"(connect {stats['connect_errors']}, read {stats['read_errors']}, timeout {stats['timeouts']}, "
                              f"non-2xx {stats['non2xx']})", flush=True)
            finally:
                server.terminate()
                server.wait(30)
    payload = {
        "command": "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tenant": {"users": args.users, "items": args.items, "factors": args.factors},
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    return 0


OVERHEAD_PROBE = r"""
import asyncio, json, statistics, time
from ml_service.metrics import REQUEST_SECONDS, MetricsMiddleware, route_label
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
async def send(message): pass
async def receive(): return {"type": "http.request"}
KNOWN = frozenset({"/user-items"})
class Before:  # the previous middleware: one histogram observe() per request (two mmap writes in multiprocess mode)
    def __init__(self, app):
        self.app, self.children = app, {}
    async def __call__(self, scope, receive, send):
        started, status = time.perf_counter(), 500
        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            key = (route_label(scope["path"], KNOWN), f"{status // 100}xx")
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = REQUEST_SECONDS.labels(*key)
            child.observe(time.perf_counter() - started)
after = MetricsMiddleware(app, known_paths=KNOWN)
before = Before(app)
scope = {"type": "http", "path": "/user-items", "method": "GET"}
FLUSH_EVERY = 250  # the real middleware flushes every 0.25 s: at >= 1,000 requests/s per worker, fewer than this between
async def timed(target, n):
    begun = time.perf_counter()
    for i in range(n):
        await target(scope, receive, send)
        if target is after and i % FLUSH_EVERY == 0:
            after.flush()
    return (time.perf_counter() - begun) / n * 1e6
async def main():
    for target in (app, before, after):
        await timed(target, 2000)
    runs = {"plain": [], "before": [], "after": []}
    for _ in range(9):  # interleaved: a drift in the host's load hits all three alike
        for name, target in (("plain", app), ("before", before), ("after", after)):
            runs[name].append(await timed(target, 20000))
    out = {name: {"median_us": round(statistics.median(v), 3), "min_us": round(min(v), 3), "max_us": round(max(v), 3)} for name, v in runs.items()}
    out["before_overhead_us"] = round(out["before"]["median_us"] - out["plain"]["median_us"], 3)
    out["after_overhead_us"] = round(out["after"]["median_us"] - out["plain"]["median_us"], 3)
    print(json.dumps(out))
asyncio.run(main())
"""


def middleware_overhead(multiprocess: bool) -> dict:
    """Microseconds the metrics middleware adds to one request (a do-nothing ASGI app without it, with the previous
    per-request observe() and with the current batched tallies), medians of 9 interleaved repetitions."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as folder:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = folder
        out = subprocess.run([sys.executable, "-c", OVERHEAD_PROBE], env=env, capture_output=True, text=True, check=True)
    return {"multiprocess": multiprocess, **json.loads(out.stdout)}


def compare_metrics(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Throughput with metrics on and off: two servers side by side, wrk runs alternating between them.

    The host is shared with other work, so on and off runs are interleaved (on, off, off, on, ...) and each
    configuration's median over the rounds is compared; a drift in background load hits both alike.
    """
    import statistics

    from ml_service.store import ModelStore

    load_start = [round(x, 2) for x in os.getloadavg()]
    overhead = [middleware_overhead(False), middleware_overhead(True)]
    print("metrics middleware per request:", overhead, flush=True)
    model, _ = build_model(args.users, args.items, args.factors)
    key = "bench-" + os.urandom(8).hex()
    rows: list[dict] = []
    summary: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = ModelStore(root / "models" / "recommender")
        store.publish("0", model)
        store.write_status({"0": {"state": "trained", "msg": "success"}})
        lua = root / "bench.lua"
        lua.write_text(LUA)
        for workers in args.workers:
            servers: dict[str, tuple[subprocess.Popen, str]] = {}
            try:
                for mode in ("on", "off"):
                    port = free_port()
                    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
                    env.update({"ML_TOTARA_URL": "http://127.0.0.1:9", "ML_TOTARA_KEY": key, "ML_MODELS_DIR": str(root / "models"),
                                "ML_LOGS_DIR": str(root / f"logs-{mode}-{workers}"), "ML_BIND": f"127.0.0.1:{port}",
                                "ML_WORKERS": str(workers), "ML_METRICS": "1" if mode == "on" else "0"})
                    proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve", "--no-scheduler"], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    servers[mode] = (proc, f"http://127.0.0.1:{port}")
                for _, url in servers.values():
                    wait_ready(url, key)
                for route in ("user-items", "similar-items"):
                    for _, url in servers.values():
                        run_wrk(url, key, route, 32, 3, args.users, args.items, lua)  # warm-up
                    for concurrency in args.concurrency:
                        rates: dict[str, list[float]] = {"on": [], "off": []}
                        cpus: dict[str, list[float]] = {"on": [], "off": []}
                        for round_ in range(args.rounds):
                            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                            for mode in order:
                                cpu_before = tree_cpu_seconds(servers[mode][0].pid)
                                stats = run_wrk(servers[mode][1], key, route, concurrency, args.seconds, args.users, args.items, lua)
                                stats["server_cpu_us_per_request"] = round(
                                    (tree_cpu_seconds(servers[mode][0].pid) - cpu_before) / max(stats["requests"], 1) * 1e6, 1)
                                stats["load_average_1m"] = round(os.getloadavg()[0], 2)
                                rates[mode].append(stats["requests_per_s"])
                                cpus[mode].append(stats["server_cpu_us_per_request"])
                                rows.append({"workers": workers, "route": route, "concurrency": concurrency, "metrics": mode,
                                             "round": round_, **stats})
                                print(f"workers={workers} {route:13s} c={concurrency:3d} metrics={mode:3s} round {round_}: "
                                      f"{stats['requests_per_s']:8.0f} req/s p99={stats['p99_ms']:.2f}ms errors={stats['errors']}", flush=True)
                        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
                        cpu_on, cpu_off = statistics.median(cpus["on"]), statistics.median(cpus["off"])
                        summary.append({"workers": workers, "route": route, "concurrency": concurrency, "median_on_rps": round(on, 1),
                                        "median_off_rps": round(off, 1), "on_over_off": round(on / off, 4),
                                        "rps_range_on": [min(rates["on"]), max(rates["on"])],
                                        "rps_range_off": [min(rates["off"]), max(rates["off"])],
                                        "median_cpu_us_on": cpu_on, "median_cpu_us_off": cpu_off,
                                        "cpu_range_on": [min(cpus["on"]), max(cpus["on"])], "cpu_range_off": [min(cpus["off"]), max(cpus["off"])],
                                        "cpu_overhead": round(cpu_on / cpu_off - 1, 4)})
                        print(f"  -> metrics on/off = {on / off:.3f}; server CPU per request on {cpu_on} us, off {cpu_off} us "
                              f"({cpu_on / cpu_off - 1:+.1%})", flush=True)
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(30)
    payload = {
        "command": "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "on/off runs interleaved, medians compared; the load averages say how busy the machine was",
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "tenant": {"users": args.users, "items": args.items, "factors": args.factors},
        "summary": summary, "middleware_overhead": overhead, "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
