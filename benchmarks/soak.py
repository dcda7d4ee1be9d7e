"""Soak: `ml-service serve` (ML_WORKERS=2) under load at concurrency 32 on /user-items and /similar-items for
`--seconds` (default 600), with a publish every 20 s, a graceful restart of every worker (SIGHUP, uvicorn's rolling
restart) in the middle and a SIGTERM to one worker at three quarters; counts failed requests, p99, RSS drift.
Then, reported apart, `--kill-extra` seconds more with one worker SIGKILLed.

    .venv/bin/python benchmarks/soak.py --seconds 600

The models are the bundled sample's three tenants, trained once by a real `ml-service train`; every publish is a
real ModelStore.publish of one tenant (a new version of its model) into the store the server watches. Each request
opens its own connection, as Totara's PHP client does. Prints the result as JSON (benchmarks/reliability.py
stores it in results/reliability.json).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_service.auth import signed_headers  # noqa: E402
from ml_service.demo.run import SAMPLE_DIR  # noqa: E402
from tests.faults.harness import KEY, TENANTS, Service, free_port, run_train, service_env, store_of  # noqa: E402



def _ids(tenant: str) -> tuple[list[str], list[str]]:
    with open(SAMPLE_DIR / f"user_data_{tenant}.csv", newline="", encoding="utf-8") as handle:
        users = [row["user_id"] for row in csv.DictReader(handle)]
    with open(SAMPLE_DIR / f"item_data_{tenant}.csv", newline="", encoding="utf-8") as handle:
        items = [row["item_id"] for row in csv.DictReader(handle)]
    return users, items


def process_tree(pid: int) -> list[int]:
    """pid and every descendant (from /proc/*/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def rss_mb(pids: list[int]) -> dict[str, float]:
    """Resident memory of each process in MB (VmRSS)."""
    sizes = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[str(pid)] = round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return sizes


def server_processes(service: Service) -> list[int]:
    """The serve process and its uvicorn workers (not the multiprocessing resource tracker)."""
    assert service.proc is not None
    pids = process_tree(service.proc.pid)
    return [p for p in pids if "resource_tracker" not in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Load:
    """`concurrency` request loops against the service until `stop`; records every outcome under the current `phase`."""

    def __init__(self, base: str, concurrency: int, seed: int) -> None:
        split = urlsplit(base)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.concurrency = concurrency
        self.rng = random.Random(seed)
        self.ids = {t: _ids(t) for t in TENANTS}
        self.phase = "warm-up"  # a request counts in the phase in which it was sent
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, list[tuple[float, str]]] = {}
        self.by_route: dict[str, dict[str, int]] = {}
        self.stop = threading.Event()

    def _request(self) -> tuple[str, dict[str, str]]:
        tenant = self.rng.choice(TENANTS)
        users, items = self.ids[tenant]
        if self.rng.random() < 0.5:
            kind = self.rng.choice(["container_course", "container_workspace", "engage_article", "engage_microlearning", "totara_playlist"])
            return "/user-items", {"totara_user_id": self.rng.choice(users), "item_type": kind, "tenant": tenant, "n_items": "10"}
        return "/similar-items", {"totara_item_id": self.rng.choice(items), "tenant": tenant, "n_items": "10"}

    async def _get(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        """One GET on its own connection (as Totara's client does): (status, body). Plain asyncio streams keep
        the client's CPU per request low, since it shares the machine with the server."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            headers = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(KEY).items())
            target = f"{path}?{urlencode(params)}"
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: TotaraBot/1.0\r\n{headers}Connection: close\r\n\r\n".encode())
            raw = await asyncio.wait_for(reader.read(-1), timeout=10)
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
        return status, body

    async def _loop(self) -> None:
        while not self.stop.is_set():
            path, params = self._request()
            phase = self.phase
            started = time.perf_counter()
            try:
                status, body = await self._get(path, params)
                ok = status == 200 and json.loads(body).get("success") is True
                why = f"HTTP {status} {body[:120]!r}"
            except (OSError, ValueError, asyncio.TimeoutError) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            routes = self.by_route.setdefault(phase, {"/user-items": 0, "/similar-items": 0})
            routes[path] += 1
            if ok:
                self.latencies.setdefault(phase, []).append(time.perf_counter() - started)
            else:
                self.errors.setdefault(phase, []).append((time.time(), f"{path}: {why}"))

    async def _run(self) -> None:
        await asyncio.gather(*(self._loop() for _ in range(self.concurrency)))

    def run(self) -> None:
        asyncio.run(self._run())

    def summary(self, phase: str, seconds: float) -> dict[str, Any]:
        """Requests, failures and latency percentiles of the requests sent during `phase`."""
        latencies = sorted(self.latencies.get(phase, []))
        errors = self.errors.get(phase, [])
        requests = len(latencies) + len(errors)
        return {
            "requests": requests,
            "requests_per_s": round(requests / seconds, 1) if seconds else None,
            "by_route": self.by_route.get(phase, {}),
            "errors": len(errors),
            "error_samples": [e[1] for e in errors[:10]],
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        }


def _workers(service: Service) -> list[int]:
    assert service.proc is not None
    return sorted(p for p in server_processes(service) if p != service.proc.pid)


def _wait_for_workers(service: Service, old: list[int], count: int, timeout: float) -> tuple[list[int], float | None]:
    """Wait until `count` workers run and none of `old` is left: (the workers then, seconds taken or None)."""
    started = time.monotonic()
    now = _workers(service)
    while time.monotonic() - started < timeout:
        now = _workers(service)
        if len(now) == count and not set(now) & set(old):
            return now, round(time.monotonic() - started, 1)
        time.sleep(0.2)
    return now, None


def _rolling_restart(service: Service, workers: int) -> dict[str, Any]:
    """SIGHUP to the server: uvicorn starts a new worker, waits until it serves, then SIGTERMs an old one, in turn."""
    assert service.proc is not None
    before = _workers(service)
    os.kill(service.proc.pid, signal.SIGHUP)
    after, took = _wait_for_workers(service, before, workers, 120)
    return {"event": "SIGHUP to the server (graceful rolling restart of every worker)", "workers_before": before,
            "workers_after": after, "completed_within_s": took}


def _terminate_one_worker(service: Service, workers: int) -> dict[str, Any]:
    """SIGTERM to one worker: it stops accepting, finishes what it has, exits; uvicorn's supervisor replaces it."""
    before = _workers(service)
    os.kill(before[0], signal.SIGTERM)
    after, took = _wait_for_workers(service, [before[0]], workers, 60)
    return {"event": "SIGTERM to one worker (graceful stop, replaced by the supervisor)", "victim": before[0],
            "workers_after": after, "replaced_within_s": took}


def _kill_one_worker(service: Service, workers: int) -> dict[str, Any]:
    """SIGKILL one worker; record when the supervisor's replacement runs."""
    before = _workers(service)
    os.kill(before[0], signal.SIGKILL)
    after, took = _wait_for_workers(service, [before[0]], workers, 60)
    return {"event": "SIGKILL to one worker", "victim": before[0], "workers_after": after, "replaced_within_s": took}


def _in_background(
    note: Callable[[dict[str, Any], float], None], event: Callable[[Service, int], dict[str, Any]], service: Service,
    workers: int, at: float,
) -> threading.Thread:
    """Run a restart event (which waits for its outcome) beside the publishing loop; `note` its record."""
    thread = threading.Thread(target=lambda: note(event(service, workers), at), name=event.__name__)
    thread.start()
    return thread


def run_soak(
    seconds: float, concurrency: int = 32, publish_every_s: float = 20.0, workers: int = 2, seed: int = 7,
    kill_extra_s: float = 30.0, rss_every_s: float = 30.0,
) -> dict[str, Any]:
    """The whole soak in a temporary folder; returns the measurements.

    The soak proper (`seconds`): load, a publish every `publish_every_s`, a graceful restart of every worker
    (SIGHUP) in the middle and a SIGTERM to one worker at three quarters; its `errors` is the goal (zero). Then,
    reported apart as `sigkill_extra` (`kill_extra_s` more seconds of the same load): one worker SIGKILLed. A
    killed process cannot finish anything: the kernel resets the connections it had accepted, so a request in
    flight there fails; these failures are counted, not hidden.
    """
    with tempfile.TemporaryDirectory(prefix="ml-soak-") as tmp:
        workdir = Path(tmp)
        env = service_env(workdir, f"http://127.0.0.1:{free_port()}")
        done = run_train(env, "--source", str(SAMPLE_DIR))
        if done.returncode != 0:
            raise RuntimeError(f"the initial training failed: {done.stderr[-2000:]}")
        store = store_of(env)
        models = {t: store.load(t, mmap=False).model for t in TENANTS}
        with Service(env, workdir / "server.log", workers=workers) as service:
            time.sleep(3)  # workers up and models loaded
            load = Load(service.base, concurrency, seed)
            events: list[dict[str, Any]] = []
            rss_timeline: list[dict[str, Any]] = []
            loader = threading.Thread(target=load.run, name="load")
            loader.start()
            time.sleep(min(5.0, seconds / 10))
            rss_start = rss_mb(server_processes(service))
            load.phase = "soak"
            started = time.monotonic()
            next_publish, published = started + publish_every_s, 0
            next_rss = started
            restart_done = terminate_done = False
            rss_before_restart: dict[str, float] = {}
            restarts: list[threading.Thread] = []

            def note(event: dict[str, Any], at: float) -> None:
                events.append({"at_s": round(at, 1), **event})

            while (elapsed := time.monotonic() - started) < seconds:
                if time.monotonic() >= next_rss:
                    sizes = rss_mb(server_processes(service))
                    rss_timeline.append({"at_s": round(elapsed), "total_mb": round(sum(sizes.values()), 1), "by_pid": sizes})
                    next_rss += rss_every_s
                if time.monotonic() >= next_publish:
                    tenant = TENANTS[published % len(TENANTS)]
                    version = store.publish(tenant, models[tenant])
                    note({"event": "publish", "tenant": tenant, "version": version}, elapsed)
                    published += 1
                    next_publish += publish_every_s
                if not restart_done and elapsed >= seconds / 2:
                    restart_done = True
                    rss_before_restart.update(rss_mb(server_processes(service)))
                    restarts.append(_in_background(note, _rolling_restart, service, workers, elapsed))
                if not terminate_done and elapsed >= seconds * 0.75:
                    terminate_done = True
                    restarts.append(_in_background(note, _terminate_one_worker, service, workers, elapsed))
                time.sleep(0.2)
            for thread in restarts:
                thread.join()
            soak_s = time.monotonic() - started
            rss_end = rss_mb(server_processes(service))
            rss_timeline.append({"at_s": round(soak_s), "total_mb": round(sum(rss_end.values()), 1), "by_pid": rss_end})
            load.phase = "sigkill"
            kill_started = time.monotonic()
            time.sleep(min(5.0, kill_extra_s / 3))
            kill_event = _kill_one_worker(service, workers)
            kill_event["at_s"] = round(time.monotonic() - kill_started, 1)
            time.sleep(max(0.0, kill_extra_s - (time.monotonic() - kill_started)))
            load.phase = "after"
            kill_s = time.monotonic() - kill_started
            time.sleep(2)  # let the requests of the last phase come back
            load.stop.set()
            loader.join(30)
            workers_after = _workers(service)
        server_log = (workdir / "server.log").read_text(errors="replace").splitlines()
        log_problems = [line[:300] for line in server_log if any(w in line for w in ("ERROR", "Traceback", "not ready"))]
        same = [pid for pid in rss_start if pid in rss_before_restart]
        soak = load.summary("soak", soak_s)
        return {
            "seconds": seconds,
            "concurrency": concurrency,
            "workers": workers,
            "publishes": published,
            "publish_every_s": publish_every_s,
            **soak,
            "loaded_seconds": round(soak_s, 1),
            "rss_mb_start": rss_start,
            "rss_mb_before_restart": rss_before_restart,
            "rss_mb_end": rss_end,
            "rss_mb_total_start": round(sum(rss_start.values()), 1),
            "rss_mb_total_end": round(sum(rss_end.values()), 1),
            "rss_mb_drift": round(sum(rss_end.values()) - sum(rss_start.values()), 1),
            "rss_mb_drift_same_processes_first_half": round(sum(rss_before_restart[p] - rss_start[p] for p in same), 1),
            "rss_timeline": rss_timeline,
            "workers_at_end": len(workers_after),
            "server_log_errors": log_problems[:20],
            "events": sorted(events, key=lambda e: e["at_s"]),
            "sigkill_extra": {**load.summary("sigkill", kill_s), "seconds": round(kill_s, 1), "event": kill_event},
            "note": ("errors counts the soak proper (graceful restarts included); sigkill_extra is the SIGKILL of a worker "
                     "after it, reported apart: a killed process's accepted connections are reset by the kernel. RSS per "
                     "process id: a restarted worker is a new process, so start and end list different ids; "
                     "rss_mb_drift_same_processes_first_half compares the same processes before the restart."),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--publish-every", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-extra", type=float, default=30.0, help="seconds of the SIGKILL phase after the soak")
    ns = parser.parse_args()
    result = run_soak(ns.seconds, ns.concurrency, ns.publish_every, ns.workers, kill_extra_s=ns.kill_extra)
    print(json.dumps(result, indent=1))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
