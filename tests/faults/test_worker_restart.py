"""Graceful worker restarts under load (ML_WORKERS=2): a SIGHUP rolling restart and a SIGTERM to one worker lose no
request; a new worker gets ML_WORKER_START_TIMEOUT to load the models before the restart gives up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

from ml_service.auth import signed_headers
from tests.faults.conftest import clone_workdir
from tests.faults.harness import KEY, PROBES, TENANTS, Service, free_port, service_env, wait_until


def workers(service: Service) -> set[int]:
    assert service.proc is not None
    children = Path(f"/proc/{service.proc.pid}/task/{service.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")}


class Clients:
    """A few clients sending /similar-items requests, each on its own connection as Totara's client does."""

    def __init__(self, port: int, count: int = 4) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(TENANTS[i % len(TENANTS)],)) for i in range(count)]

    def _loop(self, tenant: str) -> None:
        while not self.stop.is_set():
            headers = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(KEY).items())
            request = (f"GET /similar-items?totara_item_id={PROBES[tenant][1]}&tenant={tenant}&n_items=5 HTTP/1.1\r\n"
                       f"Host: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n").encode()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                    sock.sendall(request)
                    answer = b"".join(iter(lambda: sock.recv(65536), b""))
                status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b"none"
                if status == b"200" and b'"success":true' in answer.replace(b" ", b""):
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {status!r}: {answer[:200]!r}")
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_rolling_restart_and_sigterm_of_a_worker_lose_no_request(trained_template: Path, tmp_path: Path) -> None:
    env = service_env(clone_workdir(trained_template, tmp_path), f"http://127.0.0.1:{free_port()}")
    with Service(env, tmp_path / "server.log", workers=2) as service:
        wait_until(lambda: len(workers(service)) == 2, 30, "two workers")
        with Clients(service.port) as clients:
            wait_until(lambda: clients.ok > 20, 60, "answers before the restart")
            first = workers(service)
            assert service.proc is not None
            os.kill(service.proc.pid, signal.SIGHUP)
            wait_until(lambda: len(workers(service)) == 2 and not workers(service) & first, 180, "the rolling restart")
            during_restart = clients.ok
            second = workers(service)
            victim = min(second)
            os.kill(victim, signal.SIGTERM)
            wait_until(lambda: len(workers(service)) == 2 and victim not in workers(service), 120, "a replacement worker")
            wait_until(lambda: clients.ok > during_restart + 20, 60, "answers after the restarts")
        log = (tmp_path / "server.log").read_text(errors="replace")
    assert clients.failures == [], clients.failures[:5]
    assert "not ready in time" not in log


def test_a_rolling_restart_gives_up_after_ml_worker_start_timeout_and_keeps_the_old_workers(
    trained_template: Path, tmp_path: Path,
) -> None:
    """A new worker that does not finish starting within ML_WORKER_START_TIMEOUT makes the restart give up, the old
    workers still answering. The new worker is stopped (SIGSTOP) as soon as it appears: on a quiet machine one
    starts and loads these small models in under the 1 s minimum, so waiting for a slow start would be a race."""
    env = service_env(clone_workdir(trained_template, tmp_path), f"http://127.0.0.1:{free_port()}", ML_WORKER_START_TIMEOUT="1")
    log_path = tmp_path / "server.log"
    with Service(env, log_path, workers=2) as service:
        wait_until(lambda: len(workers(service)) == 2, 30, "two workers")
        before = workers(service)
        assert service.proc is not None
        os.kill(service.proc.pid, signal.SIGHUP)
        deadline, stopped = time.monotonic() + 30, None
        while stopped is None and time.monotonic() < deadline:
            new = workers(service) - before
            if new:
                stopped = min(new)
                os.kill(stopped, signal.SIGSTOP)  # it can neither load the models nor answer the health ping
            else:
                time.sleep(0.005)
        assert stopped is not None, "no new worker appeared after SIGHUP"
        try:
            wait_until(lambda: "not ready in time" in log_path.read_text(errors="replace"), 60, "the restart to give up")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        wait_until(lambda: stopped not in workers(service), 30, "the stopped worker to be killed")
        assert workers(service) == before
        assert service.answer_problems() == []
