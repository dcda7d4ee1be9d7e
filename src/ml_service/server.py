"""Running the service: the app built from the environment, listening sockets, worker processes, the scheduler."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any

import uvicorn

from ml_service.config import BindAddress, Settings
from ml_service.scheduler import Scheduler, SchedulerView, TrainingRunner, scheduler_state_path

log = logging.getLogger("ml_service.server")
APP_FACTORY = "ml_service.server:app_from_env"


def raise_open_file_limit() -> int:
    """Lift this process's soft limit of open files to its hard limit; return the limit now in force.

    Every memory-mapped model array keeps a file descriptor open (13 per tenant for a factor model), so the
    common soft limit of 1,024 would leave tenants beyond about 75 unloadable (EMFILE).
    """
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def app_from_env() -> Any:
    """The ASGI app for one worker process, from the ML_* environment (uvicorn calls this in each worker)."""
    from threadpoolctl import threadpool_limits

    from ml_service.api.app import create_app
    from ml_service.logs import configure_logging
    from ml_service.store import ModelStore

    # One BLAS thread per worker: a request's product then never waits for a helper thread that another worker
    # or process holds the core of (with 2 threads, a 10k x 64 product took 9 ms at p99 on a busy 2-core host).
    threadpool_limits(limits=1, user_api="blas")
    raise_open_file_limit()
    settings = Settings.from_env(require_totara=not _demo_mode())
    configure_logging(settings.logs_dir)
    store = ModelStore.from_settings(settings)
    return create_app(settings, store, scheduler=SchedulerView(scheduler_state_path(settings)), refresh_interval_s=settings.store_poll_s)


def _http_protocol() -> Any:
    """uvicorn's httptools protocol writing each response in one send() (see http_protocol); "auto" without httptools."""
    try:
        from ml_service.http_protocol import CoalescingHttpToolsProtocol
    except ImportError:  # httptools comes with uvicorn[standard]; without it uvicorn picks h11
        return "auto"
    return CoalescingHttpToolsProtocol


def _demo_mode() -> bool:
    return os.environ.get("ML_DEMO") == "1"


def open_sockets(addresses: tuple[BindAddress, ...]) -> list[socket.socket]:
    """Bound, listening sockets for every ML_BIND address (IPv6 when the host has a colon)."""
    sockets: list[socket.socket] = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((address.host, address.port))
        except OSError as exc:
            for s in sockets:
                s.close()
            raise OSError(f"cannot listen on {address} (ML_BIND): {exc.strerror or exc}") from exc
        sock.listen(2048)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


class ServiceStopped(BaseException):
    """SIGTERM arrived: unwind `serve` so its clean-up (ending the training child) runs."""


def has_any_model(store: Any) -> bool:
    """True when some tenant's CURRENT names a version; a garbage or unreadable CURRENT counts as none (logged)."""
    from ml_service.store import BadPointerError

    for tenant in store.tenants():
        try:
            if store.current_version(tenant):
                return True
        except BadPointerError as exc:
            log.warning("tenant %s: %s; the next training run replaces it", tenant, exc)
    return False


def _raise_stopped(signum: int, frame: Any) -> None:
    raise ServiceStopped()


def serve(settings: Settings, *, with_scheduler: bool = True) -> None:
    """Run the HTTP service in the foreground until SIGINT/SIGTERM (what start.sh, Docker and systemd call).

    On either signal the running training child and its process group are ended before this returns.
    """
    from ml_service.logs import configure_logging
    from ml_service.store import ModelStore

    settings.ensure_dirs()
    configure_logging(settings.logs_dir)  # the scheduler logs from this (supervisor) process
    store = ModelStore.from_settings(settings)
    if settings.workers > 1 and settings.metrics_enabled and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from ml_service.metrics import prepare_multiprocess

        prepare_multiprocess(settings.logs_dir / "prometheus")  # /metrics then adds up every worker's counters
    sockets = open_sockets(settings.bind)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        http=_http_protocol(),
        workers=settings.workers,
        timeout_worker_healthcheck=settings.worker_start_timeout_s,
        access_log=False,  # the app writes its own access log, without secrets
        log_level="warning" if not settings.dev else "info",
        timeout_keep_alive=30,
        reload=False,
    )
    server = uvicorn.Server(config)
    scheduler: Scheduler | None = None
    # uvicorn restores this handler after its graceful shutdown and raises SIGTERM again: by default that would
    # end the process at once, skipping the `finally` below and orphaning a training child.
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        if with_scheduler:
            runner = TrainingRunner(settings)
            scheduler = Scheduler(
                settings.retrain_freq_minutes * 60.0,
                run_once=runner.run,
                has_model=lambda: has_any_model(store),
                state_path=scheduler_state_path(settings),
                cancel=runner.stop,
            )
            runner.on_child = scheduler.child_started
            scheduler.start()
        print("ML Service listening on " + ", ".join(f"http://{a}" for a in settings.bind), flush=True)
        if settings.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=sockets).run()  # one uvicorn Server per worker process
        else:
            server.run(sockets=sockets)
    except ServiceStopped:
        log.info("SIGTERM: stopping")
    finally:
        if scheduler is not None:
            scheduler.stop()  # ends a running training child with its process group
        for sock in sockets:
            sock.close()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
