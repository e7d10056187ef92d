"""Errors over HTTP, in one place: which status a library error answers with, and which body shape.

Every failure answers a JSON body with a 4xx or 5xx, never an HTML page or a traceback. The shape is the API's
the path belongs to: the native API answers ``{"error": {"code", "message", "type", "param"}}``; the OpenAI
views (chat completions, completions, models, conversations, responses) answer OpenAI's ``{"error": {"message", "type",
"param", "code"}}``, where a validation error is a 400 and a bad key is ``invalid_api_key``. The exception
handlers and the middlewares (auth, body limit) all answer through :func:`error_response`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import (
    AgentUnavailableError,
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    ModelUnavailableError,
    MofaError,
    NotFoundError,
    ProviderError,
    ServiceUnavailableError,
    SessionBusyError,
    TenantMismatchError,
)

__all__ = ["OPENAI_PREFIXES", "ApiError", "api_of", "error_payload", "error_response", "install_error_handlers",
           "status_of"]

log = logging.getLogger("mofa_sdk.server")

#: path prefixes of the OpenAI views: their errors take OpenAI's shape
OPENAI_PREFIXES = ("/v1/chat/", "/v1/completions", "/v1/models", "/v1/conversations", "/v1/responses")

_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "body_too_large", 415: "unsupported_media_type", 422: "invalid_request",
          502: "provider_error", 503: "unavailable"}
_NATIVE_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
                 409: "invalid_request_error", 429: "rate_limit_error"}
_OPENAI_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}


class ApiError(Exception):
    """An error of the HTTP layer (a request the routes refuse) with its status, a stable ``code`` and, when
    a request field is at fault, its name (``param``)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: str
    message: str
    param: str | None = None
    headers: dict[str, str] | None = None


def api_of(path: str) -> Literal["native", "openai"]:
    return "openai" if path.startswith(OPENAI_PREFIXES) else "native"


def error_response(path: str, status: int, code: str | None, message: str, *, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one mapping of a failure to a response: the body shape of the API that ``path`` belongs to."""
    code = code or _CODES.get(status, "error")
    body: dict[str, Any]
    if api_of(path) == "openai":
        status = 400 if status == 422 else status
        code = "invalid_api_key" if status == 401 else code
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    else:
        kind = _NATIVE_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        body = {"error": {"code": code, "message": message, "type": kind, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: MofaError) -> int:
    """The HTTP status a library error answers with. Another tenant's row is a 404, exactly like a missing one."""
    if isinstance(exc, NotFoundError | TenantMismatchError):
        return 404
    if isinstance(exc, ConflictError | SessionBusyError | AgentUnavailableError):
        return 409
    if isinstance(exc, DatabaseUnavailableError | ServiceUnavailableError):
        return 503
    if isinstance(exc, ProviderError):
        return 502
    if isinstance(exc, ConfigError):  # ValidationError included: a value the database cannot hold
        return 422
    return 500


def _code_of(exc: MofaError, status: int) -> str:
    if isinstance(exc, ServiceUnavailableError | AgentUnavailableError | ModelUnavailableError):
        return exc.code
    return _CODES.get(status, "error")


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, str) and p.startswith("<"):  # a tagged union's member (its tag "<name>"), not a field
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


#: pydantic error types by the code OpenAI gives them (``unsupported_parameter`` is raised by the schemas);
#: any other is ``invalid_request``, as every validation error of the native API is
_PYDANTIC_CODES = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter",
                   "unsupported_parameter": "unsupported_parameter"}


def _validation(exc: RequestValidationError) -> _Failure:
    """The first problem names the field (``param``) and the code; the message lists them all."""
    parts: list[str] = []
    param: str | None = None
    code: str | None = None
    for err in exc.errors():
        kind = str(err.get("type"))
        if kind == "json_invalid":
            parts.append(f"malformed JSON body: {err.get('ctx', {}).get('error', 'cannot be parsed')}")
            code = code or "invalid_json"
            continue
        loc = tuple(p for p in err.get("loc", ()) if p != "body")
        where = _loc(loc[1:] if loc and loc[0] in ("query", "header", "path") else loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
        if param is None:
            param, code = where, code or _PYDANTIC_CODES.get(kind, "invalid_request")
    return _Failure(422, code or "invalid_request", "; ".join(parts) or "invalid request", param)


def error_payload(path: str, exc: Exception) -> tuple[int, dict[str, Any]]:
    """A failure's status and body as the handlers below answer it, for a transport with no HTTP response of
    its own (a WebSocket message): an unexpected exception is logged and reads as an internal error."""
    if isinstance(exc, ApiError):
        f = _Failure(exc.status, exc.code, exc.message, exc.param)
    elif isinstance(exc, RequestValidationError):
        f = _validation(exc)
    elif isinstance(exc, MofaError):
        status = status_of(exc)
        f = _Failure(status, _code_of(exc, status), str(exc), "model" if isinstance(exc, ModelUnavailableError)
                     else None)
    else:
        log.exception("unexpected error on %s", path, exc_info=exc)
        f = _Failure(500, "internal", "internal server error")
    answer = error_response(path, f.status, f.code, f.message, param=f.param)
    return answer.status_code, json.loads(bytes(answer.body))


def install_error_handlers(app: FastAPI) -> None:
    """The app's exception handlers: each turns an exception into a failure, :func:`error_response` shapes it."""

    def answer(request: Request, f: _Failure) -> JSONResponse:
        return error_response(request.url.path, f.status, f.code, f.message, param=f.param, headers=f.headers)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return answer(request, _Failure(exc.status, exc.code, exc.message, exc.param, exc.headers))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        failure = _validation(exc)
        if api_of(request.url.path) == "native":  # the native API names every validation error one way
            failure = _Failure(failure.status, "invalid_request", failure.message, failure.param)
        return answer(request, failure)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return answer(request, _Failure(exc.status_code, _CODES.get(exc.status_code, "error"), message,
                                        headers=getattr(exc, "headers", None)))

    @app.exception_handler(MofaError)
    async def _mofa(request: Request, exc: MofaError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        param = "model" if isinstance(exc, ModelUnavailableError) else None  # the one field it names
        return answer(request, _Failure(status, _code_of(exc, status), str(exc), param))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, _Failure(500, "internal", "internal server error"))
