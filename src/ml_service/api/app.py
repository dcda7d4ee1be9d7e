"""The ASGI app factory: routes, auth, access log, error shapes and the model hot-swap poller, no global state."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import AsyncIterator, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ml_service.api.auth_middleware import AuthMiddleware, SecretKey, auth_result_of
from ml_service.api.docs_page import add_offline_docs
from ml_service.api.errors import install_error_handlers
from ml_service.api.favicon import FAVICON_PATH
from ml_service.api.health import SchedulerInfo, TotaraProbe, health_report
from ml_service.api.home import render_home
from ml_service.api.middleware import AccessLogMiddleware, DispatchMiddleware
from ml_service.api.admin import build_admin_app
from ml_service.api.mount import ObservabilityMount
from ml_service.training.progress import current_run
from ml_service.api.responses import SortedJSONResponse
from ml_service.api.routes import build_router
from ml_service.config import Settings
from ml_service.serving import Recommender
from ml_service.store import ModelStore

log = logging.getLogger("ml_service.api")


def create_app(
    settings: Settings,
    store: ModelStore,
    *,
    recommender: Recommender | None = None,
    health_probe: TotaraProbe | None = None,
    scheduler: SchedulerInfo | None = None,
    refresh_interval_s: float | None = 1.0,
    clock: Callable[[], float] = time.time,
    fast_path: bool = True,
) -> FastAPI:
    """The service's ASGI app.

    The models the store holds now are loaded before this returns; while the app runs (lifespan), a daemon
    thread polls the store every `refresh_interval_s` seconds (None: never) and hot-swaps new versions.
    `clock` is the service clock used by authentication and the health check. `fast_path=False` answers the
    recommendation routes through FastAPI's routing rather than the dispatch middleware (same answers, slower;
    the tests check both).
    """
    if recommender is None:
        recommender = Recommender(
            store, retry_wait_s=settings.load_retry_wait_s, retry_max_wait_s=settings.load_retry_max_wait_s
        )
    admin = build_admin_app(settings, store, recommender, scheduler=scheduler, clock=clock)
    metrics = None
    probe = health_probe if health_probe is not None else TotaraProbe.from_settings(settings)
    try:
        recommender.refresh()
    except Exception:  # an unreadable store must not stop the service from starting and answering
        log.exception("loading the models from %s failed; answering 'not ready' until they can be read", store.root)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if refresh_interval_s:
            recommender.start_polling(refresh_interval_s)
        try:
            yield
        finally:
            recommender.stop_polling()

    app = FastAPI(
        title="Totara ML Service",
        summary="Recommendations for Totara: the API Totara's ml_service client calls",
        default_response_class=SortedJSONResponse,
        redoc_url=None,
        docs_url=None,  # add_offline_docs: Swagger UI's files from the package, not a CDN
        lifespan=lifespan,
        # No OpenTelemetry: with it on, FastAPI asks the global providers on every request (~15 µs).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.redirect_slashes = False  # `/health-check/` is an unknown path (404), as in the reference
    app.state.recommender = recommender  # for embedding code and tests; request handlers use their closures
    app.state.admin = admin  # the dashboard (None when off), for tests and benchmarks
    routes = build_router(recommender, seen_policy=settings.seen_policy, max_n_items=settings.max_n_items)
    app.include_router(routes.router)

    @app.get("/health-check", summary="Service and Totara connectivity, model state (Totara's healthcheck CLI)")
    async def health_check(request: Request) -> Response:
        body = await health_report(
            totara_url=settings.totara_url,
            logs_summary=settings.train_summary_log,
            recommender=recommender,
            auth=auth_result_of(request.scope),
            probe=probe,
            scheduler=scheduler,
            now=clock(),
        )
        run = current_run(settings.logs_dir)  # live progress of the newest training run, if any was recorded
        if run is not None and isinstance(body.get("service"), dict):
            body["service"]["training_progress"] = run
        if metrics is not None:
            from ml_service.metrics import PROBE_UP

            PROBE_UP.set(0 if body.get("errors") else 1)
        return SortedJSONResponse(body)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return HTMLResponse(render_home(settings.app_mode, settings.totara_url, settings.max_n_items))

    favicon = FAVICON_PATH.read_bytes()

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon_ico() -> Response:
        return Response(favicon, media_type="image/vnd.microsoft.icon", headers={"Cache-Control": "public, max-age=86400"})

    add_offline_docs(app)
    install_error_handlers(app)
    known_paths = {getattr(route, "path", "") for route in [*app.routes, *routes.router.routes]} - {""}
    # add_middleware puts the last added outermost: access log -> auth -> HEAD/OPTIONS/hot routes -> routing.
    app.add_middleware(DispatchMiddleware, known_paths=known_paths, fast_routes=routes.endpoints if fast_path else None)
    app.add_middleware(AuthMiddleware, key=SecretKey(settings.totara_key), clock=clock)
    if settings.metrics_enabled:
        from ml_service.metrics import MetricsEndpoint, exposition_registry, instrument_recommender

        instrument_recommender(recommender)
        metrics = MetricsEndpoint(exposition_registry(recommender, settings.training_jsonl), settings.metrics_token)
    app.add_middleware(ObservabilityMount, metrics=metrics, admin=admin, bare_router=app.router,
                       has_admin_session=admin.has_session if admin is not None else (lambda scope: False))
    tallies = None
    if settings.metrics_enabled:
        from ml_service.metrics import WORKER_UP, RequestTallies

        WORKER_UP.set(1)
        tallies = RequestTallies(known_paths | {"/metrics"})
    app.add_middleware(AccessLogMiddleware, tallies=tallies)  # the access log and the request metrics, timed once
    return app
