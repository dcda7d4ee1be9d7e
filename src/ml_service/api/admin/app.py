"""The dashboard's Starlette app: login/logout, role and CSRF checks, every page and action, all under /admin/."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ml_service.api.admin import actions, data
from ml_service.api.admin.accounts import Accounts
from ml_service.api.admin.charts import line_chart, sparkline
from ml_service.api.admin.history import ndcg_history
from ml_service.api.admin.sessions import COOKIE, AuditLog, LoginLimiter, Session, SessionStore
from ml_service.auth import signed_headers
from ml_service.config import Settings
from ml_service.data.tenant import ITEM_TYPES
from ml_service.metrics_training import STAGES, TrainingCollector, stage_seconds
from ml_service.serving import TenantIndex
from ml_service.training.progress import current_run, read_runs

HERE = Path(__file__).parent
Handler = Callable[[Request, Session], Awaitable[Response]]


class AdminApp:
    """The ASGI app of /admin plus `has_session`, which /docs uses to let a logged-in admin read the API docs."""

    def __init__(self, settings: Settings, store: Any, recommender: Any, scheduler: Any, clock: Callable[[], float]) -> None:
        self.settings, self.store, self.recommender, self.scheduler, self.clock = settings, store, recommender, scheduler, clock
        self.accounts = Accounts(settings.admin_users_file, settings.admin_password)
        self.sessions = SessionStore(settings.models_dir / "admin" / "sessions", settings.admin_session_s, clock)
        self.limiter = LoginLimiter(settings.admin_login_attempts)
        self.audit = AuditLog(settings.logs_dir / "admin_audit.jsonl", clock)
        self.training = TrainingCollector(settings.training_jsonl)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["iso"] = data.iso
        self.templates.env.filters["stages"] = stage_seconds
        self.templates.env.globals["STAGES"] = STAGES
        for name in self.templates.env.list_templates():  # compiled now, not during the first visitor's request
            self.templates.get_template(name)
        self.history = ndcg_history(store)
        self._versions_cache: dict[tuple[str, str], TenantIndex] = {}
        self._versions_list: dict[str, tuple[tuple[int, str | None], list[Any]]] = {}
        get, post = ["GET"], ["POST"]
        routes = [
            Route("/admin", self.redirect_home, methods=get),
            Route("/admin/login", self.login_form, methods=get),
            Route("/admin/login", self.login, methods=post),
            Route("/admin/logout", self.page(self.logout, action=True), methods=post),
            Route("/admin/static/admin.css", self.css, methods=get),
            Route("/admin/", self.page(self.overview), methods=get),
            Route("/admin/tenants/{tenant}", self.page(self.tenant), methods=get),
            Route("/admin/tenants/{tenant}/try", self.page(self.try_it), methods=get),
            Route("/admin/tenants/{tenant}/retrain", self.page(self.retrain, action=True), methods=post),
            Route("/admin/tenants/{tenant}/rollback", self.page(self.rollback, action=True), methods=post),
            Route("/admin/tenants/{tenant}/pin", self.page(self.pin, action=True), methods=post),
            Route("/admin/tenants/{tenant}/unpin", self.page(self.unpin, action=True), methods=post),
            Route("/admin/runs", self.page(self.runs), methods=get),
            Route("/admin/runs/start", self.page(self.retrain, action=True), methods=post),
            Route("/admin/progress", self.page(self.progress_json), methods=get),
            Route("/admin/settings", self.page(self.settings_page), methods=get),
            Route("/admin/api", self.page(self.api_page), methods=get),
            Route("/admin/api", self.page(self.api_try, action=True), methods=post),
        ]
        self.app = Starlette(routes=routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- sessions ---------------------------------------------------------------------------------------
    def has_session(self, scope: Any) -> bool:
        return self._session_of_headers(scope.get("headers", [])) is not None

    def _session_of_headers(self, headers: list[tuple[bytes, bytes]]) -> Session | None:
        for name, value in headers:
            if name == b"cookie":
                cookie = SimpleCookie()
                try:
                    cookie.load(value.decode("latin-1"))
                except Exception:
                    return None
                morsel = cookie.get(COOKIE)
                session = self.sessions.get(morsel.value if morsel else None)
                if session is not None and self.accounts.role_of(session.user) is None:
                    return None  # the account was removed since the login
                return session
        return None

    def page(self, handler: Handler, *, action: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: a session is required (else the login page / 401); actions also need operator + CSRF."""

        async def endpoint(request: Request) -> Response:
            session = self._session_of_headers(request.scope["headers"])
            if session is None:
                if request.method == "GET":
                    return RedirectResponse("/admin/login", status_code=303)
                return Response("Not logged in\n", status_code=401, media_type="text/plain")
            if action:
                form = await request.form()
                what = request.url.path.rsplit("/", 1)[-1]
                tenant = request.path_params.get("tenant")
                if not session.csrf_ok(form.get("csrf")):  # type: ignore[arg-type]
                    self.audit.record(session.user, session.role, what, "refused: bad or missing CSRF token", tenant=tenant)
                    return Response("Refused: the form's CSRF token is missing or wrong; reload the page\n", status_code=403,
                                    media_type="text/plain")
                if what != "logout" and what != "api" and session.role != "operator":
                    self.audit.record(session.user, session.role, what, "refused: viewer", tenant=tenant)
                    return Response("Refused: your role is viewer; actions need an operator\n", status_code=403, media_type="text/plain")
                request.state.form = form
            response = await handler(request, session)
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"
            return response

        return endpoint

    def render(self, request: Request, session: Session | None, template: str, **context: Any) -> Response:
        context.update(session=session, now=data.iso(self.clock()), flash=request.query_params.get("msg", ""))
        return self.templates.TemplateResponse(request, template, context)

    # -- login ------------------------------------------------------------------------------------------
    async def redirect_home(self, request: Request) -> Response:
        return RedirectResponse("/admin/", status_code=303)

    async def css(self, request: Request) -> Response:
        return FileResponse(HERE / "static" / "admin.css", media_type="text/css")

    async def login_form(self, request: Request) -> Response:
        return self.render(request, None, "login.html", error="")

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "-"
        form = await request.form()
        name, password = str(form.get("username") or ""), str(form.get("password") or "")
        if self.limiter.blocked(client):
            self.audit.record(name, "", "login", "refused: too many attempts", client=client)
            response = self.render(request, None, "login.html", error="Too many failed logins from your address; wait a minute.")
            response.status_code = 429
            return response
        account = self.accounts.verify(name, password)
        if account is None:
            self.limiter.failed(client)
            self.audit.record(name, "", "login", "refused: wrong name or password", client=client)
            response = self.render(request, None, "login.html", error="Wrong name or password.")
            response.status_code = 401
            return response
        session = self.sessions.create(account.name, account.role)
        self.audit.record(account.name, account.role, "login", "ok", client=client)
        response = RedirectResponse("/admin/", status_code=303)
        response.set_cookie(COOKIE, session.sid, max_age=int(self.settings.admin_session_s), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        self.sessions.delete(session.sid)
        self.audit.record(session.user, session.role, "logout", "ok")
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages --------------------------------------------------------------------------------------------
    def _tenants(self) -> list[str]:
        state = self.recommender.state
        return sorted(set(state.indexes) | set(state.known_tenants) | set(state.status),
                      key=lambda t: (0, int(t), "") if t.isdigit() else (1, 0, t))

    def _versions(self, tenant: str) -> list[Any]:
        """The tenant's stored versions, re-read only when its folder changed (publish, rollback and prune all rename or
        remove entries in it, which changes its modification time)."""
        try:
            key = (self.store.tenant_stamp(tenant), self.store.current_version(tenant))
            cached = self._versions_list.get(tenant)
            if cached is not None and cached[0] == key:
                return cached[1]
            versions = self.store.versions(tenant)
            self._versions_list[tenant] = (key, versions)
            return versions
        except Exception:
            return []

    def _progress(self) -> dict[str, Any] | None:
        run = current_run(self.settings.logs_dir)
        if run is not None:
            run = dict(run, eta_text=data.age_text(run.get("eta_s")) if run.get("eta_s") is not None else "")
        return run

    async def overview(self, request: Request, session: Session) -> Response:
        state, now = self.recommender.state, self.clock()
        from ml_service.api.health import service_details

        details = service_details(self.recommender, self.scheduler, now)["tenants"]
        rows = []
        for tenant in self._tenants():
            entry = details.get(tenant, {})
            rows.append({
                "tenant": tenant, "version": entry.get("version", ""), "algorithm": entry.get("algorithm", ""),
                "trained_at": entry.get("trained_at", ""), "age": data.age_text(entry.get("age_seconds")),
                "ndcg": (entry.get("metrics") or {}).get("ndcg@10"), "coverage": (entry.get("metrics") or {}).get("coverage@10"),
                "users": entry.get("users"), "items": entry.get("items"),
                "state": entry.get("last_run_state") or "", "msg": entry.get("last_run_msg") or "",
                "spark": sparkline(self.history.of(tenant)), "served": tenant in state.indexes,
                "interactions": _interactions(state.indexes.get(tenant)),
            })
        next_run = getattr(self.scheduler, "next_run_at", None) if self.scheduler is not None else None
        return self.render(request, session, "overview.html", rows=rows, progress=self._progress(), next_run=data.iso(next_run))

    async def tenant(self, request: Request, session: Session) -> Response:
        tenant = request.path_params["tenant"]
        if tenant not in self._tenants():
            return self.render(request, session, "missing.html", what=f"tenant {tenant}")
        versions = self._versions(tenant)
        oldest_first = list(reversed(versions))
        labels = [v.version for v in oldest_first]
        series = {name: [(v.metrics or {}).get(name) for v in oldest_first] for name in ("ndcg@10", "recall@10", "coverage@10")}
        chart_data = [{"version": v.version, **{k: (v.metrics or {}).get(k) for k in series}} for v in oldest_first]
        records = data.tenant_records(self.training.records(), tenant)
        index = self.recommender.state.indexes.get(tenant)
        load_report = ((index.meta.get("info") or {}).get("load_report") or {}) if index is not None else {}
        pinned = getattr(self.store, "pinned_version", None)
        return self.render(
            request, session, "tenant.html", tenant=tenant, versions=versions, chart=line_chart(labels, series),
            chart_data=chart_data, records=records, quality=data.quality_report(load_report), index=index,
            pin_supported=actions.pin_supported(self.store), pinned=pinned(tenant) if callable(pinned) else None,
            progress=self._progress(),
        )

    def _index_for(self, tenant: str, version: str | None) -> TenantIndex | None:
        served = self.recommender.state.indexes.get(tenant)
        if not version or (served is not None and served.version == version):
            return served
        key = (tenant, version)
        if key not in self._versions_cache:
            loaded = self.store.load(tenant, version)
            if len(self._versions_cache) > 8:
                self._versions_cache.clear()
            self._versions_cache[key] = TenantIndex(tenant, loaded.version, loaded.model, loaded.meta)
        return self._versions_cache[key]

    async def try_it(self, request: Request, session: Session) -> Response:
        tenant = request.path_params["tenant"]
        q = request.query_params
        user, item, version = q.get("user", "").strip(), q.get("item", "").strip(), q.get("version", "").strip()
        error, learner, similar, index = "", None, None, None
        try:
            index = self._index_for(tenant, version or None)
        except Exception as exc:
            error = f"version {version} cannot be loaded: {exc}"
        if index is None and not error:
            error = f"tenant {tenant} has no served model"
        matches: list[str] = []
        if index is not None:
            if user:
                learner = data.learner_view(index, user, 5, self.settings.seen_policy)
                if not learner["known"]:
                    matches = [u for u in index.model.user_ids if u.startswith(user)][:20]
            if item:
                similar = data.item_view(index, item)
                if similar is None:
                    error = f"item {item} is not in this model"
        return self.render(request, session, "try.html", tenant=tenant, user=user, item=item, version=version,
                           versions=self._versions(tenant), index=index, learner=learner, similar=similar, error=error,
                           matches=matches, sample_users=list(index.model.user_ids[:8]) if index is not None else [],
                           sample_items=list(index.model.item_ids[:8]) if index is not None else [],
                           item_types=index.model.type_names if index is not None else ITEM_TYPES)

    async def runs(self, request: Request, session: Session) -> Response:
        return self.render(request, session, "runs.html", runs=data.runs_table(self.training.records()),
                           live=read_runs(self.settings.logs_dir), progress=self._progress(),
                           audit=self.audit.tail(20) if session.role == "operator" else [])

    async def progress_json(self, request: Request, session: Session) -> Response:
        return JSONResponse({"progress": self._progress()})

    async def settings_page(self, request: Request, session: Session) -> Response:
        return self.render(request, session, "settings.html", rows=data.settings_rows(self.settings))

    async def api_page(self, request: Request, session: Session) -> Response:
        return self.render(request, session, "api.html", result=None, path="/user-items", params="totara_user_id=2&item_type=container_course&tenant=0&n_items=5")

    async def api_try(self, request: Request, session: Session) -> Response:
        """Sign and send one request to this service for the logged-in admin; the key never leaves the server."""
        import httpx

        form = request.state.form
        path = str(form.get("path") or "/user-items")
        if path not in ("/user-items", "/similar-items", "/health-check"):
            path = "/user-items"
        params = str(form.get("params") or "")
        base = f"{request.url.scheme}://{request.url.netloc}"
        async with httpx.AsyncClient(timeout=10.0) as client:
            answer = await client.get(base + path + ("?" + params if params else ""), headers=signed_headers(self.settings.totara_key))
        self.audit.record(session.user, session.role, "api-try", f"HTTP {answer.status_code}", path=path)
        body = answer.text
        try:
            import json

            body = json.dumps(answer.json(), indent=2, ensure_ascii=False)
        except ValueError:
            pass
        if self.settings.totara_key:
            body = body.replace(self.settings.totara_key, "***")
        return self.render(request, session, "api.html", result={"status": answer.status_code, "body": body}, path=path, params=params)

    # -- actions ----------------------------------------------------------------------------------------
    def _done(self, session: Session, action: str, tenant: str | None, outcome: str, back: str) -> Response:
        self.audit.record(session.user, session.role, action, outcome, tenant=tenant)
        from urllib.parse import quote

        return RedirectResponse(f"{back}?msg={quote(outcome)}", status_code=303)

    async def retrain(self, request: Request, session: Session) -> Response:
        tenant = request.path_params.get("tenant")
        back = f"/admin/tenants/{tenant}" if tenant else "/admin/runs"
        try:
            outcome = actions.start_training(self.settings, tenant)
        except Exception as exc:
            outcome = f"refused: {exc}"
        return self._done(session, "retrain", tenant, outcome, back)

    async def rollback(self, request: Request, session: Session) -> Response:
        tenant = request.path_params["tenant"]
        version = str(request.state.form.get("version") or "") or None
        try:
            now = self.store.rollback(tenant, version)
            self.recommender.refresh()
            outcome = f"rolled back to {now}"
        except Exception as exc:
            outcome = f"failed: {exc}"
        return self._done(session, "rollback", tenant, outcome, f"/admin/tenants/{tenant}")

    async def pin(self, request: Request, session: Session) -> Response:
        return self._pin(request, session, "pin")

    async def unpin(self, request: Request, session: Session) -> Response:
        return self._pin(request, session, "unpin")

    def _pin(self, request: Request, session: Session, what: str) -> Response:
        tenant = request.path_params["tenant"]
        if not actions.pin_supported(self.store):
            return self._done(session, what, tenant, "refused: this build's model store cannot pin versions", f"/admin/tenants/{tenant}")
        try:
            if what == "pin":
                self.store.pin(tenant, str(request.state.form.get("version") or "") or None)
            else:
                self.store.unpin(tenant)
            self.recommender.refresh()
            outcome = f"{what} done"
        except Exception as exc:
            outcome = f"failed: {exc}"
        return self._done(session, what, tenant, outcome, f"/admin/tenants/{tenant}")


def _interactions(index: TenantIndex | None) -> int | None:
    if index is None:
        return None
    value = ((index.meta.get("info") or {}).get("sizes") or {}).get("interactions")
    return int(value) if isinstance(value, (int, float)) else None


def build_admin_app(settings: Settings, store: Any, recommender: Any, *, scheduler: Any = None,
                    clock: Callable[[], float] = time.time) -> AdminApp | None:
    """The dashboard, or None when neither ML_ADMIN_USERS nor ML_ADMIN_PASSWORD is set (dashboard off)."""
    if settings.admin_users_file is None and not settings.admin_password:
        return None
    return AdminApp(settings, store, recommender, scheduler, clock)
