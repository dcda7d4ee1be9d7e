"""/docs: FastAPI's Swagger UI page with its script and style served by this service (fastapi-offline's copy), no CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

DOCS_PATH = "/docs"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
ASSET_PATHS = frozenset(f"{DOCS_PATH}/static/{name}" for name in ASSETS)


def assets_folder() -> Path:
    """Swagger UI's files as the fastapi-offline wheel ships them (kept current with swagger-ui-dist 5)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_offline_docs(app: FastAPI) -> None:
    """Serve /docs and its assets from the package; the app must be built with docs_url=None."""
    folder = assets_folder()
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"Swagger UI files {', '.join(missing)} are missing from {folder}: reinstall fastapi-offline")

    redirect_path = app.swagger_ui_oauth2_redirect_url or f"{DOCS_PATH}/oauth2-redirect"
    # Plain Starlette routes (add_route), as FastAPI's own /docs: an admin session reaches them through the bare router.
    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API documentation",
            swagger_js_url=f"{DOCS_PATH}/static/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_PATH}/static/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PATH}/static/favicon.png", oauth2_redirect_url=redirect_path,
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
    app.add_route(redirect_path, oauth2_redirect, methods=["GET"], include_in_schema=False)  # as FastAPI's own /docs has
    for name, media_type in ASSETS.items():
        app.add_route(f"{DOCS_PATH}/static/{name}", _asset(folder / name, media_type), methods=["GET"], include_in_schema=False)


def _asset(path: Path, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return serve
