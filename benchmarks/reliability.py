"""Reliability: fuzzed requests and the 5xx they caused, faults injected by kind with their outcomes, and a soak.

    .venv/bin/python benchmarks/reliability.py --kills 20 --soak-seconds 600 --fuzz-requests 10000

Every fault goes through the real code path (a real `ml-service serve`, real `ml-service train` children, the
Totara simulator over real HTTP, real files): the harness of tests/faults/harness.py, here repeated more often.
After each fault the previous models must still serve, no half-written version may ever be loaded, and the next
run must succeed; any deviation is recorded as a problem of that fault. Writes benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ml_service.demo.run import SAMPLE_DIR  # noqa: E402
from ml_service.demo.simulator import TotaraSimulator  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    KEY,
    STAGES,
    TENANTS,
    MisbehavingServer,
    Service,
    copy_as_new_version,
    current_versions,
    flip_bytes,
    free_port,
    kill_and_recover,
    leftovers,
    run_train,
    service_env,
    serving_problems,
    store_of,
    write_current,
)

RESULTS = ROOT / "benchmarks" / "results"


def _record(kind: str, detail: str, problems: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, "ok": not problems, "problems": problems, **extra}


def _next_run(env: dict[str, str], before: dict[str, str], service: Service) -> list[str]:
    """Run training with nothing broken: every tenant must publish and serve a new, verified version."""
    done = run_train(env)
    problems = [] if done.returncode == 0 else [f"the next run exited {done.returncode}: {done.stderr[-300:]}"]
    after = current_versions(env)
    problems += [f"tenant {t}: the next run published nothing" for t in TENANTS if after.get(t) == before.get(t)]
    return problems + serving_problems(service, env, after) + [f"left behind: {p}" for p in leftovers(env)]


# ------------------------------------------------------------------------------------------------ faults
def kills(env: dict[str, str], service: Service, simulator: TotaraSimulator, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` SIGKILLs of the training child, cycling through STAGES; the tenant drawn at random (fit: tenant 0,
    whose fit is the only one long enough to land in on the sample)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        stage = STAGES[i % len(STAGES)]
        tenant = "0" if stage in ("fit", "download", "random") else rng.choice(TENANTS)
        outcome, problems = kill_and_recover(env, service, simulator, stage, tenant, rng)
        records.append(_record("kill -9 of the training child", stage, problems, tenant=tenant, landed=outcome.landed,
                               landed_in_stage=outcome.in_stage, returncode=outcome.returncode, seconds=outcome.seconds))
        print(f"kill {i + 1}/{count} in {stage} of tenant {tenant}: landed {outcome.landed!r}, problems {problems}", flush=True)
    return records


def totara_faults(env: dict[str, str], service: Service, simulator: TotaraSimulator) -> list[dict[str, Any]]:
    """Totara down, resetting, babbling, silent, 500, 202 forever (whole run) and 500 + truncated files (per tenant)."""
    records = []
    whole_run: list[tuple[str, Callable[[], Any], dict[str, str], str]] = [
        ("connection refused", lambda: None, {"ML_TOTARA_URL": f"http://127.0.0.1:{free_port()}"}, "cannot connect"),
        ("reset without an answer", lambda: MisbehavingServer("reset"), {}, "GET "),
        ("non-HTTP bytes", lambda: MisbehavingServer("garbage"), {}, "GET "),
        ("silence (read timeout)", lambda: MisbehavingServer("silence"), {"ML_READ_TIMEOUT": "1"}, "ML_READ_TIMEOUT"),
        ("HTTP 500 on tenants.csv", lambda: simulator.status_override.update({"tenants.csv": 500}), {}, "HTTP 500"),
        ("202 forever", lambda: setattr(simulator, "not_ready_times", 10**9), {}, "answered 202"),
    ]
    for name, breaker, extra, words in whole_run:
        before = current_versions(env)
        made = breaker()
        try:
            if isinstance(made, MisbehavingServer):
                with made:
                    done = run_train({**env, **extra, "ML_TOTARA_URL": made.url})
            else:
                done = run_train({**env, **extra})
        finally:
            simulator.status_override, simulator.not_ready_times = {}, 0
        problems = [] if done.returncode == 1 else [f"exit code {done.returncode}, expected 1"]
        problems += [] if words in done.stderr else [f"the error does not say {words!r}: {done.stderr[-300:]}"]
        problems += [] if current_versions(env) == before else ["a CURRENT changed"]
        problems += serving_problems(service, env, before)
        problems += _next_run(env, before, service)
        records.append(_record("Totara misbehaves for the whole run", name, problems, message=done.stderr.strip()[-300:]))
    before = current_versions(env)
    simulator.status_override = {"user_interactions_1.csv": 500}
    simulator.truncate_bytes, simulator.fault_files = 100, {"item_data_2.csv"}
    try:
        done = run_train(env)
    finally:
        simulator.status_override, simulator.truncate_bytes, simulator.fault_files = {}, None, None
    after = current_versions(env)
    problems = [] if done.returncode == 1 else [f"exit code {done.returncode}, expected 1"]
    problems += [] if after["0"] != before["0"] else ["tenant 0 was not trained"]
    problems += [f"tenant {t} changed" for t in "12" if after[t] != before[t]]
    problems += serving_problems(service, env, after) + _next_run(env, after, service)
    records.append(_record("Totara misbehaves for some files", "HTTP 500 on tenant 1, truncated body on tenant 2", problems))
    return records


def store_faults(env: dict[str, str], service: Service, seed: int) -> list[dict[str, Any]]:
    """Corrupt new versions (flipped bytes, truncated, deleted file) and garbage CURRENT files under the server."""
    rng = random.Random(seed)
    records = []

    def largest(folder: Path) -> Path:
        return max(folder.glob("*.npy"), key=lambda p: p.stat().st_size)

    damages: dict[str, Callable[[Path], None]] = {
        "flipped bytes in a .npy": lambda f: flip_bytes(largest(f), rng),
        "truncated .npy": lambda f: largest(f).write_bytes(largest(f).read_bytes()[: largest(f).stat().st_size // 2]),
        "deleted .npy": lambda f: largest(f).unlink(),
    }
    for name, damage in damages.items():
        before = current_versions(env)
        tenant = rng.choice(TENANTS)
        copy_as_new_version(env, tenant, damage)
        time.sleep(3)  # three refresh intervals
        problems = serving_problems(service, env, before) + _next_run(env, before, service)
        records.append(_record("corrupt version file", name, problems, tenant=tenant))
    garbage = {
        "random bytes": bytes(rng.randrange(256) for _ in range(40)),
        "path traversal": b"../0/20261202T000000.000000Z-abcdef\n",
        "missing version": b"20261202T000000.000000Z-abcdef\n",
    }
    store = store_of(env)
    for name, content in garbage.items():
        before = current_versions(env)
        write_current(env, "1", content)
        try:
            expected = {**before, "0": store.publish("0", store.load("0", mmap=False).model)}
            problems = [f"other tenants while tenant 1's CURRENT is garbage: {p}" for p in serving_problems(service, env, expected)]
        finally:
            write_current(env, "1", (before["1"] + "\n").encode("ascii"))
        problems += _next_run(env, current_versions(env), service)
        records.append(_record("garbage CURRENT under a running server", name, problems))
    return records


def full_disk(template: Path, seed: int) -> list[dict[str, Any]]:
    """ML_MODELS_DIR on a 4 MB tmpfs, filled to half a version (then to nothing) before a run."""
    if os.geteuid() != 0:
        return [_record("full disk during publish", "skipped: needs root to mount a tmpfs", [], skipped=True)]
    records = []
    for leave in ("half a version", "nothing"):
        with tempfile.TemporaryDirectory(prefix="ml-disk-") as tmp:
            workdir = Path(tmp)
            mount = workdir / "models"
            mount.mkdir()
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
            if mounted.returncode != 0:
                return [_record("full disk during publish", f"skipped: mount failed: {mounted.stderr.strip()}", [], skipped=True)]
            try:
                shutil.copytree(template / "models", mount, dirs_exist_ok=True)
                env = service_env(workdir, f"http://127.0.0.1:{free_port()}")
                before = current_versions(env)
                size = sum(p.stat().st_size for p in (store_of(env).root / "0" / before["0"]).iterdir())
                with Service(env, workdir / "server.log") as service:
                    stats = os.statvfs(mount)
                    filler = mount / "filler"
                    with open(filler, "wb") as handle:
                        try:
                            handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - (size // 2 if leave != "nothing" else 0)))
                        except OSError:
                            pass
                    done = run_train(env, "--source", str(SAMPLE_DIR))
                    problems = [] if done.returncode != 0 else ["the run reported success on a full disk"]
                    problems += [] if current_versions(env) == before else ["a CURRENT changed"]
                    problems += [f"left behind: {p}" for p in leftovers(env)] + serving_problems(service, env, before)
                    filler.unlink()
                    done = run_train(env, "--source", str(SAMPLE_DIR))
                    after = current_versions(env)
                    problems += [] if done.returncode == 0 else [f"the next run exited {done.returncode}"]
                    problems += [f"tenant {t}: nothing published" for t in TENANTS if after[t] == before[t]]
                    problems += serving_problems(service, env, after)
            finally:
                subprocess.run(["umount", "-l", str(mount)], check=False)
            records.append(_record("full disk during publish", f"free space left: {leave} (4 MB tmpfs)", problems))
    return records


# ------------------------------------------------------------------------------------------------ fuzz
def fuzz(requests: int, seed: int, template: Path) -> dict[str, Any]:
    """Run benchmarks/fuzz.py's `fuzz_service(base_url, key, requests, seed, models_dir=...)` against a real server."""
    try:
        import fuzz as fuzz_module  # noqa: PLC0415 - benchmarks/fuzz.py is written on another branch
    except ImportError as exc:
        return {"status": "fuzz: not available", "why": f"benchmarks/fuzz.py cannot be imported ({exc})"}
    runner = getattr(fuzz_module, "fuzz_service", None)
    if runner is None:
        return {"status": "fuzz: not available", "why": "benchmarks/fuzz.py has no fuzz_service(base_url, key, requests, seed, models_dir)"}
    with tempfile.TemporaryDirectory(prefix="ml-fuzz-") as tmp:
        shutil.copytree(template / "models", Path(tmp) / "models")
        env = service_env(Path(tmp), f"http://127.0.0.1:{free_port()}")
        with Service(env, Path(tmp) / "server.log") as service:
            result = dict(runner(service.base, KEY, requests, seed, models_dir=Path(env["ML_MODELS_DIR"])))
            result["server_answers_afterwards"] = not service.answer_problems()
    return result


# ------------------------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the training child (default 20)")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--fuzz-requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS / "reliability.json")
    ns = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ml-reliability-") as tmp:
        workdir = Path(tmp)
        with TotaraSimulator(SAMPLE_DIR, KEY, port=0) as simulator:
            env = service_env(workdir, simulator.url)
            first = run_train(env)
            if first.returncode != 0:
                raise SystemExit(f"the initial training failed: {first.stderr[-2000:]}")
            template = workdir / "template"
            shutil.copytree(workdir / "models", template / "models")
            fuzz_result = fuzz(ns.fuzz_requests, ns.seed, template)
            print(f"fuzz: {fuzz_result}", flush=True)
            with Service(env, workdir / "server.log") as service:
                records = kills(env, service, simulator, ns.kills, ns.seed)
                records += totara_faults(env, service, simulator)
                records += store_faults(env, service, ns.seed)
            records += full_disk(template, ns.seed)
    from soak import run_soak  # noqa: PLC0415

    soak = run_soak(ns.soak_seconds)
    kinds: dict[str, dict[str, Any]] = {}
    for record in records:
        entry = kinds.setdefault(record["kind"], {"injected": 0, "ok": 0, "failed": 0, "details": Counter()})
        entry["injected"] += 1
        if record.get("landed_in_stage") is False:  # the child got past the aimed stage before the kill
            entry["missed_the_aimed_stage"] = entry.get("missed_the_aimed_stage", 0) + 1
        entry["ok" if record["ok"] else "failed"] += 1
        entry["details"][record["detail"]] += 1
    document = {
        "command": "python benchmarks/reliability.py " + " ".join(sys.argv[1:]),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_1m_at_end": os.getloadavg()[0]},
        "seconds": round(time.monotonic() - started, 1),
        "fuzz": fuzz_result,
        "faults": {kind: {**v, "details": dict(v["details"])} for kind, v in kinds.items()},
        "fault_failures": sum(v["failed"] for v in kinds.values()),
        "fault_records": records,
        "soak": soak,
    }
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"wrote {ns.out}: {document['fault_failures']} fault failures, soak errors {soak['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
