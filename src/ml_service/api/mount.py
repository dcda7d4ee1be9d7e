"""Routes that bypass Totara's key: /metrics (own bearer token), /admin (dashboard sessions), /docs for an admin session."""

from __future__ import annotations

from typing import Callable

from ml_service.api.auth_middleware import ASGIApp, Receive, Scope, Send
from ml_service.api.docs_page import ASSET_PATHS

DOCS_PATHS = frozenset({"/docs", "/openapi.json", "/docs/oauth2-redirect"}) | ASSET_PATHS
DASHBOARD_OFF = b"The dashboard is off: set ML_ADMIN_PASSWORD or ML_ADMIN_USERS to turn it on.\n"


class ObservabilityMount:
    """Sends /metrics and /admin/* to their own apps before Totara authentication; /docs too for a logged-in admin."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ASGIApp | None,
        admin: ASGIApp | None,
        bare_router: ASGIApp,
        has_admin_session: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.admin = admin
        self.bare_router = bare_router
        self.has_admin_session = has_admin_session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/metrics" and self.metrics is not None:
                await self.metrics(scope, receive, send)
                return
            if path == "/admin" or path.startswith("/admin/"):
                if self.admin is None:
                    await send({"type": "http.response.start", "status": 404,
                                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(DASHBOARD_OFF)).encode())]})
                    await send({"type": "http.response.body", "body": DASHBOARD_OFF})
                    return
                await self.admin(scope, receive, send)
                return
            if path in DOCS_PATHS and self.admin is not None and self.has_admin_session(scope):
                await self.bare_router(scope, receive, send)  # the API docs for a person, without Totara's signature
                return
        await self.app(scope, receive, send)
