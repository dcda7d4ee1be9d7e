"""Fault-injection harness: real `ml-service serve` and `ml-service train` processes, signed HTTP, store checks.

Shared by the fault tests (tests/faults/) and the long runs of benchmarks/reliability.py and benchmarks/soak.py.
"""

from __future__ import annotations

import csv
import os
import queue
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import httpx

from ml_service.auth import signed_headers
from ml_service.demo.run import SAMPLE_DIR
from ml_service.store import STATE_FILE, TMP_PREFIX, ModelStore
from ml_service.store.format import new_version_id

KEY = "fault-suite-key-0123"
TENANTS = ("0", "1", "2")
STAGES = ("download", "load", "fit", "publish", "random")


def _first_ids(tenant: str) -> tuple[str, str]:
    """A learner id and an item id of the bundled sample's tenant, for probe requests."""
    with open(SAMPLE_DIR / f"user_data_{tenant}.csv", newline="", encoding="utf-8") as handle:
        user = next(csv.DictReader(handle))["user_id"]
    with open(SAMPLE_DIR / f"item_data_{tenant}.csv", newline="", encoding="utf-8") as handle:
        item = next(csv.DictReader(handle))["item_id"]
    return user, item


PROBES: dict[str, tuple[str, str]] = {tenant: _first_ids(tenant) for tenant in TENANTS}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `predicate` (HTTP errors count as False) until true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def service_env(workdir: Path, totara_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of one fault scenario: models and logs under `workdir`, fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update(
        ML_TOTARA_URL=totara_url,
        ML_TOTARA_KEY=KEY,
        ML_MODELS_DIR=str(workdir / "models"),
        ML_LOGS_DIR=str(workdir / "logs"),
        ML_NUM_THREADS="1",
        ML_RECOMMENDATION_ALGORITHM="popular",
        ML_DOWNLOAD_RETRY_WAIT="0.1",
        ML_DOWNLOAD_RETRIES="1",
        ML_CONNECT_TIMEOUT="2",
        ML_READ_TIMEOUT="5",
    )
    env.update(extra)
    return env


def store_of(env: Mapping[str, str]) -> ModelStore:
    return ModelStore(Path(env["ML_MODELS_DIR"]) / "recommender")


def current_versions(env: Mapping[str, str]) -> dict[str, str]:
    """tenant -> the version its CURRENT names (tenants without one left out)."""
    store = store_of(env)
    return {t: v for t in store.tenants() if (v := store.current_version(t))}


def touch_state(env: Mapping[str, str]) -> None:
    """Change the store's STATE token as any tenant's publish does, so every server re-reads the store."""
    root = store_of(env).root
    tmp = root / f"{STATE_FILE}.fault-{secrets.token_hex(4)}"
    tmp.write_text(secrets.token_hex(16) + "\n", encoding="ascii")
    os.replace(tmp, root / STATE_FILE)


# ------------------------------------------------------------------------------------------------ processes
def run_train(env: Mapping[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`ml-service train ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ml_service.cli", "train", *args], env=dict(env), capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )


class Service:
    """`ml-service serve --no-scheduler` on a free 127.0.0.1 port, stopped with SIGINT (then SIGKILL)."""

    def __init__(self, env: Mapping[str, str], log_path: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.env = {**env, "ML_BIND": f"127.0.0.1:{self.port}", "ML_WORKERS": str(workers)}
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(timeout=10)

    def start(self, timeout: float = 90) -> "Service":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_service.cli", "serve", "--no-scheduler"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_until(lambda: self.client.get(self.base + "/", timeout=2).status_code == 200, timeout, f"the server on {self.base}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()

    def __enter__(self) -> "Service":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.client.get(self.base + path, params=params, headers=signed_headers(KEY))

    def served_versions(self) -> dict[str, str]:
        """tenant -> the model version the server says (in /health-check) it serves."""
        tenants = self.get("/health-check").json()["service"]["tenants"]
        return {t: d["version"] for t, d in tenants.items() if d.get("version")}

    def answer_problems(self, tenants: tuple[str, ...] = TENANTS) -> list[str]:
        """What is wrong with a /user-items and a /similar-items answer of each tenant ([] = all 200 + success)."""
        problems = []
        for tenant in tenants:
            user, item = PROBES[tenant]
            for path, params in (
                ("/user-items", {"totara_user_id": user, "item_type": "container_course", "tenant": tenant, "n_items": "5"}),
                ("/similar-items", {"totara_item_id": item, "tenant": tenant, "n_items": "5"}),
            ):
                response = self.get(path, **params)
                body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                if response.status_code != 200 or body.get("success") is not True:
                    problems.append(f"{path} tenant {tenant}: HTTP {response.status_code} {response.text[:200]}")
        return problems


# ------------------------------------------------------------------------------------------------ checks
def version_problems(env: Mapping[str, str], versions: Mapping[str, str]) -> list[str]:
    """Each (tenant, version) must be a complete folder that loads with every hash verified."""
    store = store_of(env)
    problems = []
    for tenant, version in versions.items():
        if version.startswith("."):
            problems.append(f"tenant {tenant}: serves a temporary folder {version}")
            continue
        try:
            store.load(tenant, version, verify_hashes=True)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            problems.append(f"tenant {tenant}: version {version} does not verify: {exc}")
    return problems


def serving_problems(service: Service, env: Mapping[str, str], expected: Mapping[str, str], timeout: float = 15) -> list[str]:
    """Wait until the server serves exactly `expected` (tenant -> version); then every served version verifies
    and every tenant answers. Returns the problems ([] = all good)."""
    try:
        wait_until(lambda: service.served_versions() == dict(expected), timeout, f"the server to serve {dict(expected)}")
    except AssertionError as exc:
        try:
            served = service.served_versions()
        except httpx.HTTPError as http_exc:
            served = {"error": str(http_exc)}
        return [f"{exc}; it serves {served}"]
    return version_problems(env, expected) + service.answer_problems(tuple(expected))


def leftovers(env: Mapping[str, str]) -> list[str]:
    """Temporary version folders (`.tmp-*`) in tenant folders: a publish that died midway."""
    root = store_of(env).root
    return sorted(str(p) for p in root.glob(f"*/{TMP_PREFIX}*")) if root.is_dir() else []


def staging_leftovers(env: Mapping[str, str]) -> list[str]:
    """Download staging folders still present (a finished run removes its own)."""
    staging = Path(env["ML_MODELS_DIR"]) / "staging"
    return sorted(str(p) for p in staging.iterdir()) if staging.is_dir() else []


# ------------------------------------------------------------------------------------------------ kill -9
@dataclass
class KillOutcome:
    """One SIGKILL of a training child: where it was aimed, what the child had reported last, what it left."""

    stage: str
    tenant: str
    landed: str  # the child's last progress line before it died ("" = none: still starting or downloading)
    in_stage: bool  # the kill landed inside the aimed stage (as far as the progress lines and files tell)
    returncode: int
    seconds: float
    notes: list[str] = field(default_factory=list)


_PROGRESS_SUFFIX = re.compile(r"\s+\[\d+%[^\]]*\]$")  # "  [40%, about 12 s left]" after each progress line


def _reader(stream: object, lines: "queue.Queue[str | None]", seen: list[str]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        line = _PROGRESS_SUFFIX.sub("", raw.rstrip("\n"))
        seen.append(line)
        lines.put(line)
    lines.put(None)


def _wait_line(lines: "queue.Queue[str | None]", wanted: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        if line is None:
            return False
        if line.strip() == wanted:
            return True
    return False


def train_and_kill(
    env: Mapping[str, str], args: tuple[str, ...], stage: str, tenant: str, rng: random.Random,
    *, while_frozen: Callable[[], None] | None = None, random_max_s: float = 12.0, timeout: float = 120,
) -> KillOutcome:
    """Start `ml-service train ARGS` and SIGKILL it in `stage` of `tenant` (see STAGES).

    download: once a file appears in its staging folder (make the simulator stall so the kill lands mid-file);
    load: at once on its `tenant T: load` line (it may land early in the fit: loading takes a few ms);
    fit: a random short delay after its `tenant T: train` progress line;
    publish: the moment its `.tmp-` version folder appears (watched from its `train` line on); the child is frozen (SIGSTOP) first and
    `while_frozen` runs with the half-written folder on disk; random: uniformly within `random_max_s`.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_service.cli", "train", *args], env=dict(env), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, bufsize=1,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=_reader, args=(proc.stderr, lines, seen), daemon=True).start()
    notes: list[str] = []
    in_stage = False
    try:
        if stage == "download":
            staging = Path(env["ML_MODELS_DIR"]) / "staging"
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if staging.is_dir() and any(any(d.iterdir()) for d in staging.iterdir() if d.is_dir()):
                    break
                time.sleep(0.005)
            in_stage = not any(s.startswith("tenant ") for s in seen)
        elif stage in ("load", "fit"):
            marker = "load" if stage == "load" else "train"
            if not _wait_line(lines, f"tenant {tenant}: {marker}", timeout):
                notes.append(f"never saw 'tenant {tenant}: {marker}'")
            if stage == "load":
                proc.send_signal(signal.SIGSTOP)  # at once: loading the sample takes a few ms
            else:
                time.sleep(rng.uniform(0, 1.5))
        elif stage == "publish":
            folder = store_of(env).root / tenant
            # Watch from the start of the fit: on a busy machine a small publish is over before its line is read.
            if not _wait_line(lines, f"tenant {tenant}: train", timeout):
                notes.append(f"never saw 'tenant {tenant}: train'")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if folder.is_dir() and any(p.name.startswith(TMP_PREFIX) for p in folder.iterdir()):
                    proc.send_signal(signal.SIGSTOP)
                    in_stage = True
                    break
                time.sleep(0.001)  # a publish takes 100 ms or more; leave the child its core
            if in_stage and while_frozen is not None:
                while_frozen()
        elif stage == "random":
            time.sleep(rng.uniform(0, random_max_s))
        else:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    finally:
        proc.kill()
        proc.wait(30)
    time.sleep(0.05)  # let the reader drain what the child wrote before it died
    landed = next((s for s in reversed(seen) if s.startswith(f"tenant {tenant}: ")), "")
    if stage == "load":
        # Loading the sample takes ~5 ms, less than reading the child's progress line from a pipe: the kill is
        # aimed at the load and may land early in the fit that follows it, never after the tenant is published.
        in_stage = landed in (f"tenant {tenant}: load", f"tenant {tenant}: train")
    elif stage == "fit":
        in_stage = landed == f"tenant {tenant}: train"
    elif stage == "random":
        in_stage = True
    return KillOutcome(stage, tenant, landed, in_stage, proc.returncode, round(time.monotonic() - started, 3), notes)


# ------------------------------------------------------------------------------------------------ store faults
def flip_bytes(path: Path, rng: random.Random, count: int = 8) -> None:
    """Invert `count` bytes of the file's data part (after a .npy header) in place, as bit rot would."""
    data = bytearray(path.read_bytes())
    start = min(128, max(0, len(data) - 1))
    for _ in range(count):
        position = rng.randrange(start, len(data))
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def copy_as_new_version(env: Mapping[str, str], tenant: str, damage: Callable[[Path], None]) -> str:
    """Copy the tenant's current version to a new, later version id, damage the copy, and make it CURRENT
    (a publish whose files rotted before any server loaded them). Returns the new version id."""
    store = store_of(env)
    folder = store.root / tenant
    current = store.current_version(tenant)
    assert current is not None
    new = new_version_id(store._version_names(folder))
    tmp = folder / f"{TMP_PREFIX}{new}"
    shutil.copytree(folder / current, tmp)
    damage(tmp)
    os.rename(tmp, folder / new)
    write_current(env, tenant, (new + "\n").encode("ascii"))
    return new


def write_current(env: Mapping[str, str], tenant: str, content: bytes) -> None:
    """Replace a tenant's CURRENT atomically with `content` (valid or garbage) and bump the STATE token."""
    folder = store_of(env).root / tenant
    tmp = folder / f"CURRENT.fault-{secrets.token_hex(4)}"
    tmp.write_bytes(content)
    os.replace(tmp, folder / "CURRENT")
    touch_state(env)


# ------------------------------------------------------------------------------------------------ bad HTTP
class MisbehavingServer:
    """A tiny threaded TCP server on 127.0.0.1 that answers every request badly: `reset` (closes without a
    byte), `garbage` (non-HTTP bytes, then closes) or `silence` (reads and says nothing until stopped)."""

    def __init__(self, mode: str) -> None:
        if mode not in ("reset", "garbage", "silence"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "MisbehavingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                return
            self.requests += 1
            if self.mode == "garbage":
                conn.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" + secrets.token_bytes(64))
            elif self.mode == "silence":
                self._stop.wait(60)


def kill_and_recover(
    env: Mapping[str, str], service: Service, simulator: object, stage: str, tenant: str, rng: random.Random,
) -> tuple[KillOutcome, list[str]]:
    """SIGKILL a training run in `stage` of `tenant`, check the server, then run training again and check that
    every tenant serves a new, verified version. Returns the kill's outcome and every problem seen ([] = good).

    `simulator` is the TotaraSimulator the run downloads from (its files stall during a `download` kill).
    """
    before = current_versions(env)
    problems: list[str] = []

    def while_frozen() -> None:  # the half-written .tmp- folder is on disk: make the server re-read the store
        touch_state(env)
        time.sleep(2.5)  # more than two refresh intervals
        now = current_versions(env)  # tenants before the killed one have published in this run
        if now.get(tenant) != before.get(tenant):
            problems.append(f"tenant {tenant}: CURRENT switched to {now.get(tenant)} while its publish was frozen")
        problems.extend(f"while frozen: {p}" for p in serving_problems(service, env, now, timeout=5))

    if stage == "download":  # each file stalls after its headers, so the kill lands inside a transfer
        setattr(simulator, "stall_seconds", 3.0)
    try:
        outcome = train_and_kill(env, (), stage, tenant, rng, while_frozen=while_frozen)
    finally:
        setattr(simulator, "stall_seconds", 0.0)
    after_kill = current_versions(env)
    if stage != "random" and outcome.in_stage:  # a kill that came too late may legitimately see a switch
        later = TENANTS[TENANTS.index(tenant):]
        problems += [f"tenant {t}: CURRENT changed by a run killed before its publish" for t in later if after_kill.get(t) != before.get(t)]
    problems += [f"after the kill: {p}" for p in serving_problems(service, env, after_kill)]
    done = run_train(env)
    if done.returncode != 0:
        problems.append(f"the next run exited {done.returncode}: {done.stderr[-500:]}")
    after = current_versions(env)
    problems += [f"tenant {t}: the next run published nothing" for t in TENANTS if after.get(t) == after_kill.get(t)]
    problems += [f"after the next run: {p}" for p in serving_problems(service, env, after)]
    problems += [f"left behind: {p}" for p in leftovers(env)]
    return outcome, problems
