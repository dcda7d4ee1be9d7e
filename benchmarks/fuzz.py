"""Fuzz benchmark: N generated requests (default 10,000) against `ml-service serve` on the bundled sample.

    .venv/bin/python benchmarks/fuzz.py [--requests 10000] [--seed 9] [--algorithm auto]

Trains the bundled sample export (3 tenants) with `ml-service train`, starts `ml-service serve --no-scheduler`
on 127.0.0.1, then sends the requests of tests/fuzz_support.py: every route, valid and invalid parameters and
authentication, bad percent-encoding, non-UTF-8, repeated parameters, oversized and malformed requests. Each
answer is checked against the wire contract. Also counted: the service still answers afterwards, its memory,
and that the access log holds exactly one line per request the app saw (no line forged by a `%0A`).
Writes benchmarks/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fuzz_support: the generator and checker the CI test uses

from tests.fuzz_support import Served, run_fuzz  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SAMPLE = ROOT / "src" / "ml_service" / "demo" / "sample"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


CHECK_CALLS = [0]  # answered calls of user_items_ok: each is one access-log line


def user_items_ok(url: str, key: str, served: Served) -> bool:
    """A valid /user-items call answers 200 with a success body."""
    import httpx

    from ml_service.auth import signed_headers

    params = {"totara_user_id": served.users[0], "item_type": "container_course", "tenant": served.tenants[0], "n_items": "5"}
    try:
        response = httpx.get(url + "/user-items", params=params, headers=signed_headers(key), timeout=5)
    except httpx.HTTPError:
        return False  # not listening yet: no line
    CHECK_CALLS[0] += 1
    return response.status_code == 200 and response.json().get("success") is True


def served_values(models_dir: Path, per_tenant: int = 40) -> Served:
    """Tenants, and some user and item ids of their models, for the generator's valid values."""
    from ml_service.store import ModelStore

    store = ModelStore(models_dir / "recommender")
    tenants = tuple(store.tenants())
    users: list[str] = []
    items: list[str] = []
    for tenant in tenants:
        model = store.load(tenant).model
        users += list(model.user_ids[:per_tenant])
        items += list(model.item_ids[:per_tenant])
    return Served(tenants=tenants, users=tuple(dict.fromkeys(users)), items=tuple(dict.fromkeys(items)))


def fuzz_service(base_url: str, key: str, requests: int, seed: int, *, models_dir: Path) -> dict[str, object]:
    """Fuzz an already running server (benchmarks/reliability.py's hook): the same sweep and `requests` generated
    requests as main(), their counts and the first examples of any broken answer. `models_dir` is the server's
    ML_MODELS_DIR, where the valid tenant, user and item ids come from."""
    from urllib.parse import urlsplit

    address = urlsplit(base_url)
    if address.hostname is None or address.port is None:
        raise ValueError(f"base_url {base_url!r}: expected http://HOST:PORT")
    served = served_values(models_dir)
    started = time.monotonic()
    report = run_fuzz(address.hostname, address.port, key, served, requests, seed=seed)
    seconds = time.monotonic() - started
    result = report.to_json()
    return {
        "requests": result["requests"],
        "generated": requests,
        "5xx": result["5xx"],
        "contract_violations": result["contract_violations"],
        "seed": seed,
        "fuzz_s": round(seconds, 1),
        "statuses_by_route": {route: row["statuses"] for route, row in result["by_route"].items()},
        "examples": result["examples"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=9, help="hypothesis seed (the same seed sends the same requests)")
    parser.add_argument("--algorithm", default="auto", help="algorithm the sample is trained with")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args(argv)
    key = "fuzz-" + os.urandom(8).hex()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        env = {**os.environ, "ML_TOTARA_URL": f"http://127.0.0.1:{free_port()}", "ML_TOTARA_KEY": key,
               "ML_MODELS_DIR": str(root / "models"), "ML_LOGS_DIR": str(root / "logs"), "ML_BIND": f"127.0.0.1:{port}",
               "ML_WORKERS": "1"}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "ml_service.cli", "train", "--source", str(SAMPLE), "--algorithm", args.algorithm],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        train_s = time.monotonic() - started
        served = served_values(root / "models")
        server = subprocess.Popen([sys.executable, "-m", "ml_service.cli", "serve", "--no-scheduler"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not user_items_ok(url, key, served):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("ml-service serve did not become ready")
                time.sleep(0.5)
            rss_start = rss_mb(server.pid)
            started = time.monotonic()
            report = run_fuzz("127.0.0.1", port, key, served, args.requests, seed=args.seed)
            fuzz_s = time.monotonic() - started
            still_answering = server.poll() is None and user_items_ok(url, key, served)
            rss_end = rss_mb(server.pid)
            time.sleep(1.0)  # the access log is written by a background thread every 0.2 s
        finally:
            server.terminate()
            server.wait(30)
        access_lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in (root / "logs").glob("access.log*"))
    result = report.to_json()
    app_saw = result["requests"] - result["by_route"].get("malformed HTTP", {}).get("requests", 0)
    payload = {
        "command": "python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": "ml-service serve --no-scheduler, 1 worker, 127.0.0.1",
        "data": {"sample": "src/ml_service/demo/sample", "algorithm": args.algorithm, "tenants": list(served.tenants),
                 "train_s": round(train_s, 1)},
        "seed": args.seed,
        "requests": result["requests"],
        "5xx": result["5xx"],
        "contract_violations": result["contract_violations"],
        "still_answering": still_answering,
        "fuzz_s": round(fuzz_s, 1),
        "requests_per_s": round(result["requests"] / fuzz_s, 1),
        "rss_mb": {"start": rss_start, "end": rss_end},
        # The app writes one access line per request it answers, the readiness polls and the final check included;
        # requests the HTTP parser rejects never reach it. Any other difference is a forged or a lost line.
        "access_log": {"lines": access_lines, "fuzz_requests_reaching_the_app": app_saw, "checks": CHECK_CALLS[0],
                       "forged_or_missing": access_lines - app_saw - CHECK_CALLS[0]},
        "by_route": result["by_route"],
        "examples": result["examples"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps({k: payload[k] for k in ("requests", "5xx", "contract_violations", "still_answering", "fuzz_s", "rss_mb", "access_log")}))
    clean = payload["5xx"] == 0 and payload["contract_violations"] == 0 and payload["access_log"]["forged_or_missing"] == 0
    return 0 if clean and still_answering else 1


if __name__ == "__main__":
    sys.exit(main())
