"""JSON error bodies: every failure answers ``{"error": {"code": ..., "message": ...}}`` with a 4xx or 5xx,
never an HTML page and never a traceback. Bad input is always a 4xx that names what was wrong."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    MofaError,
    NotFoundError,
    ProviderError,
    SessionBusyError,
    TenantMismatchError,
)

__all__ = ["ApiError", "error_body", "install_error_handlers", "status_of"]

log = logging.getLogger("mofa_sdk.server")

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "body_too_large", 415: "unsupported_media_type", 422: "invalid_request",
          502: "provider_error", 503: "unavailable"}


class ApiError(Exception):
    """An error with its HTTP status and a stable ``code``."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


#: OpenAI's error ``type`` by status: every body also carries ``type`` and ``param``, so the OpenAI-compatible
#: routes answer OpenAI's error shape with the same handlers as the native ones
_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
          409: "invalid_request_error", 429: "rate_limit_error"}


def error_body(code: str, message: str, status: int = 400, param: str | None = None, **extra: Any) -> dict[str, Any]:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"code": code, "message": message, "type": kind, "param": param, **extra}}


def status_of(exc: MofaError) -> int:
    """The HTTP status a library error answers with. Another tenant's row is a 404, exactly like a missing one."""
    if isinstance(exc, NotFoundError | TenantMismatchError):
        return 404
    if isinstance(exc, ConflictError | SessionBusyError):
        return 409
    if isinstance(exc, DatabaseUnavailableError):
        return 503
    if isinstance(exc, ProviderError):
        return 502
    if isinstance(exc, ConfigError):  # ValidationError included: a value the database cannot hold
        return 422
    return 500


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "json_invalid":
            parts.append(f"malformed JSON body: {err.get('ctx', {}).get('error', 'cannot be parsed')}")
        else:
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.status, exc.param), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _describe(exc), 422), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            error_body(_CODES.get(exc.status_code, "error"), message, exc.status_code), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(MofaError)
    async def _mofa(request: Request, exc: MofaError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(_CODES.get(status, "error"), str(exc), status), status_code=status)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal", "internal server error", 500), status_code=500)
