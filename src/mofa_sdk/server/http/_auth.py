"""Authentication: ``Authorization: Bearer <key>`` on every route but ``/healthz`` and the OpenAPI schema.

It runs as middleware, before the body is read or a route is matched: a request without a valid key is a 401
whatever else is wrong with it, and nothing is read or written for it (but the key's last-used time).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from ...errors import MofaError
from ...persistence import Store, authenticate_api_key
from ..runs import Principal
from ._errors import ApiError, error_response, status_of

__all__ = ["PUBLIC_PATHS", "AuthMiddleware", "Who", "principal"]

#: with the web page's files (server/web): the page itself signs in from the browser
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                          "/", "/web/app.js", "/web/app.css", "/web/icon.svg"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mofa"'}


def _unauthorized(path: str, message: str) -> JSONResponse:
    return error_response(path, 401, "unauthorized", message, headers=_CHALLENGE)


async def _refuse(scope: Scope, receive: Receive, send: Send, answer: JSONResponse) -> None:
    """An HTTP request gets ``answer``; a WebSocket handshake is closed before it is accepted (the client
    sees HTTP 403), with the reason."""
    if scope["type"] == "http":
        await answer(scope, receive, send)
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized: a valid API key is required"})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, store: Callable[[], Store]) -> None:
        self.app = app
        self.store = store  # the app's store, opened by its lifespan
        self._touched: dict[uuid.UUID, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            await _refuse(scope, receive, send, _unauthorized(scope["path"], "missing API key: send Authorization: "
                                                              "Bearer <key> (see `mofa keys create`)"))
            return
        try:
            row = await authenticate_api_key(self.store(), key.strip(), touched=self._touched)
        except MofaError as exc:
            status = status_of(exc)
            await _refuse(scope, receive, send, error_response(scope["path"], status if status >= 500 else 503,
                                                               "unavailable", f"cannot check the API key: {exc}"))
            return
        if row is None:
            await _refuse(scope, receive, send, _unauthorized(scope["path"], "invalid or revoked API key"))
            return
        scope.setdefault("state", {})["principal"] = Principal(row.tenant_id, row.user_id, row.id)
        await self.app(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="A tenant API key from `mofa keys create`.")


def principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
) -> Principal:
    """The route dependency: who the request acts as (set by :class:`AuthMiddleware`; the bearer scheme is
    declared here so that the OpenAPI schema shows it)."""
    found = getattr(request.state, "principal", None)
    if not isinstance(found, Principal):  # a route mounted without the middleware in front of it
        raise ApiError(401, "missing API key: send Authorization: Bearer <key>", headers=_CHALLENGE)
    return found


#: the principal of a request, for a route's signature
Who = Annotated[Principal, Depends(principal)]
