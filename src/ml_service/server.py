"""Running the service: the app built from the environment, listening sockets, worker processes, the scheduler."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import uvicorn

from ml_service.config import BindAddress, Settings
from ml_service.scheduler import Scheduler, SchedulerView, scheduler_state_path, train_in_subprocess

log = logging.getLogger("ml_service.server")
APP_FACTORY = "ml_service.server:app_from_env"


def app_from_env() -> Any:
    """The ASGI app for one worker process, from the ML_* environment (uvicorn calls this in each worker)."""
    from threadpoolctl import threadpool_limits

    from ml_service.api.app import create_app
    from ml_service.logs import configure_logging
    from ml_service.store import ModelStore

    # One BLAS thread per worker: a request's product then never waits for a helper thread that another worker
    # or process holds the core of (with 2 threads, a 10k x 64 product took 9 ms at p99 on a busy 2-core host).
    threadpool_limits(limits=1, user_api="blas")
    settings = Settings.from_env(require_totara=not _demo_mode())
    configure_logging(settings.logs_dir)
    store = ModelStore(settings.recommender_dir, keep_versions=settings.keep_versions)
    return create_app(settings, store, scheduler=SchedulerView(scheduler_state_path(settings)))


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


def serve(settings: Settings, *, with_scheduler: bool = True) -> None:
    """Run the HTTP service in the foreground until SIGINT/SIGTERM (what start.sh, Docker and systemd call)."""
    from ml_service.logs import configure_logging
    from ml_service.store import ModelStore

    settings.ensure_dirs()
    configure_logging(settings.logs_dir)  # the scheduler logs from this (supervisor) process
    store = ModelStore(settings.recommender_dir, keep_versions=settings.keep_versions)
    scheduler: Scheduler | None = None
    if with_scheduler:
        scheduler = Scheduler(
            settings.retrain_freq_minutes * 60.0,
            run_once=lambda: train_in_subprocess(settings),
            has_model=lambda: bool(store.tenants()) and any(store.current_version(t) for t in store.tenants()),
            state_path=scheduler_state_path(settings),
        )
        scheduler.start()
    if settings.workers > 1 and settings.metrics_enabled and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from ml_service.metrics import prepare_multiprocess

        prepare_multiprocess(settings.logs_dir / "prometheus")  # /metrics then adds up every worker's counters
    sockets = open_sockets(settings.bind)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        http=_http_protocol(),
        workers=settings.workers,
        access_log=False,  # the app writes its own access log, without secrets
        log_level="warning" if not settings.dev else "info",
        timeout_keep_alive=30,
        reload=False,
    )
    server = uvicorn.Server(config)
    print("ML Service listening on " + ", ".join(f"http://{a}" for a in settings.bind), flush=True)
    try:
        if settings.workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=sockets).run()  # one uvicorn Server per worker process
        else:
            server.run(sockets=sockets)
    finally:
        if scheduler is not None:
            scheduler.stop()
        for sock in sockets:
            sock.close()
