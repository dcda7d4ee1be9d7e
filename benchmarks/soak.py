"""Soak: `ml-service serve` (ML_WORKERS=2) under load at concurrency 32 on /user-items and /similar-items for
`--seconds` (default 600), with a publish every 20 s, one worker SIGKILLed in the middle (uvicorn's supervisor
restarts it) and a graceful rolling restart (SIGHUP) at three quarters; counts failed requests, p99, RSS drift.

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
from typing import Any

from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml_service.auth import signed_headers  # noqa: E402
from ml_service.demo.run import SAMPLE_DIR  # noqa: E402
from tests.faults.harness import KEY, TENANTS, Service, free_port, run_train, service_env, store_of  # noqa: E402

KILL_WINDOW_S = 5.0  # errors this long after a worker kill are attributed to the kill


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
    """`concurrency` request loops against the service until `stop`; records every outcome."""

    def __init__(self, base: str, concurrency: int, seed: int) -> None:
        split = urlsplit(base)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.concurrency = concurrency
        self.rng = random.Random(seed)
        self.ids = {t: _ids(t) for t in TENANTS}
        self.latencies: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.by_route = {"/user-items": 0, "/similar-items": 0}
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
            started = time.perf_counter()
            try:
                status, body = await self._get(path, params)
                ok = status == 200 and json.loads(body).get("success") is True
                why = f"HTTP {status} {body[:120]!r}"
            except (OSError, ValueError, asyncio.TimeoutError) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            self.by_route[path] += 1
            if ok:
                self.latencies.append(time.perf_counter() - started)
            else:
                self.errors.append((time.time(), f"{path}: {why}"))

    async def _run(self) -> None:
        await asyncio.gather(*(self._loop() for _ in range(self.concurrency)))

    def run(self) -> None:
        asyncio.run(self._run())


def run_soak(seconds: float, concurrency: int = 32, publish_every_s: float = 20.0, workers: int = 2, seed: int = 7) -> dict[str, Any]:
    """The whole soak in a temporary folder; returns the measurements."""
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
            loader = threading.Thread(target=load.run, name="load")
            load_started = time.monotonic()
            loader.start()
            time.sleep(min(5.0, seconds / 10))
            rss_start = rss_mb(server_processes(service))
            started = time.monotonic()
            next_publish, published = started + publish_every_s, 0
            killed_at = hupped_at = None
            while (elapsed := time.monotonic() - started) < seconds:
                if time.monotonic() >= next_publish:
                    tenant = TENANTS[published % len(TENANTS)]
                    version = store.publish(tenant, models[tenant])
                    events.append({"at_s": round(elapsed, 1), "event": "publish", "tenant": tenant, "version": version})
                    published += 1
                    next_publish += publish_every_s
                if killed_at is None and elapsed >= seconds / 2:
                    killed_at = _kill_one_worker(service, events, elapsed)
                if hupped_at is None and elapsed >= seconds * 0.75:
                    assert service.proc is not None
                    before = sorted(server_processes(service))
                    os.kill(service.proc.pid, signal.SIGHUP)
                    hupped_at = time.time()
                    events.append({"at_s": round(elapsed, 1), "event": "SIGHUP (rolling restart)", "workers_before": before})
                time.sleep(0.2)
            # A rolling restart runs old and new workers side by side for a while: measure once it has finished.
            settle = time.monotonic() + 60
            while len(server_processes(service)) > workers + 1 and time.monotonic() < settle:
                time.sleep(0.5)
            rss_end = rss_mb(server_processes(service))
            load.stop.set()
            loaded_s = time.monotonic() - load_started
            loader.join(30)
            workers_after = [p for p in server_processes(service) if p != service.proc.pid]  # type: ignore[union-attr]
        latencies = sorted(load.latencies)
        requests = len(latencies) + len(load.errors)
        kill_errors = [e for e in load.errors if killed_at is not None and killed_at <= e[0] <= killed_at + KILL_WINDOW_S]
        return {
            "seconds": seconds,
            "concurrency": concurrency,
            "workers": workers,
            "publishes": published,
            "publish_every_s": publish_every_s,
            "requests": requests,
            "loaded_seconds": round(loaded_s, 1),
            "requests_per_s": round(requests / loaded_s, 1),
            "by_route": load.by_route,
            "errors": len(load.errors),
            "errors_within_5s_of_worker_kill": len(kill_errors),
            "errors_after_sighup": len([e for e in load.errors if hupped_at is not None and e[0] >= hupped_at]),
            "error_samples": [e[1] for e in load.errors[:10]],
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
            "rss_mb_start": rss_start,
            "rss_mb_end": rss_end,
            "rss_mb_total_start": round(sum(rss_start.values()), 1),
            "rss_mb_total_end": round(sum(rss_end.values()), 1),
            "rss_mb_drift": round(sum(rss_end.values()) - sum(rss_start.values()), 1),
            "workers_at_end": len(workers_after),
            "events": events,
            "note": "RSS per process id: a restarted worker is a new process, so start and end list different ids.",
        }


def _kill_one_worker(service: Service, events: list[dict[str, Any]], elapsed: float) -> float:
    """SIGKILL one uvicorn worker; record whether the supervisor started a replacement within 15 s."""
    assert service.proc is not None
    workers = [p for p in server_processes(service) if p != service.proc.pid]
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    deadline = time.monotonic() + 15
    replaced: list[int] = []
    while time.monotonic() < deadline:
        now = [p for p in server_processes(service) if p != service.proc.pid]
        replaced = [p for p in now if p not in workers]
        if victim not in now and len(now) >= len(workers):
            break
        time.sleep(0.2)
    events.append({
        "at_s": round(elapsed, 1), "event": "SIGKILL one worker", "victim": victim, "replacement": replaced,
        "restarted_within_s": round(time.time() - killed_at, 1) if replaced else None,
    })
    return killed_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--publish-every", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args()
    result = run_soak(ns.seconds, ns.concurrency, ns.publish_every, ns.workers)
    print(json.dumps(result, indent=1))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
