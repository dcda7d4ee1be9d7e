"""Framework-level errors in the reference's shape (spec §2.7): 404, 405 and 500 as `{"error": "true", "msg": ...}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ml_service.api.responses import SortedJSONResponse
from ml_service.api.log_safety import loggable

log = logging.getLogger("ml_service.api")

NOT_FOUND = (
    "404 Not Found: The requested URL was not found on the server. "
    "If you entered the URL manually please check your spelling and try again."
)
METHOD_NOT_ALLOWED = "405 Method Not Allowed: The method is not allowed for the requested URL."
INTERNAL_ERROR = (
    "500 Internal Server Error: The server encountered an internal error and was unable to complete your request. "
    "Either the server is overloaded or there is an error in the application."
)
_TEXTS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 500: INTERNAL_ERROR}


def framework_error(status_code: int) -> SortedJSONResponse:
    """The reference's JSON error body for 404/405/500 (other codes get a generic text); never an Allow header."""
    text = _TEXTS.get(status_code, f"{status_code} Error")
    return SortedJSONResponse({"error": "true", "msg": text}, status_code=status_code)


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    return framework_error(status)


async def _unhandled_exception(request: Request, exc: Exception) -> Response:
    # The path is the client's text: escaped, so that a `%0A` in it cannot forge lines of the service log.
    log.error("unhandled error on %s %s", loggable(request.method, 32), loggable(request.url.path), exc_info=exc)
    return framework_error(500)


def install_error_handlers(app: FastAPI) -> None:
    """Replace Starlette's default error answers (plain text, `Allow` header) by the reference's JSON."""
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unhandled_exception)
