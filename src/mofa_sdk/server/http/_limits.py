"""The request-body limits, on every method: a body over ``max_bytes`` is a 413, one slower than ``timeout``
seconds a 408, before the route sees any of it."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import error_response

__all__ = ["BodyLimitMiddleware"]


class BodyLimitMiddleware:
    """Reads the body up to the limit (a declared Content-Length over it is refused without reading), then
    hands it to the app. Bodies here are small JSON documents, so holding one is cheap."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    def _too_large(self, path: str) -> JSONResponse:
        return error_response(path, 413, "body_too_large",
                              f"the request body is larger than the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # every method: a body on a GET or a DELETE is read (and refused over the limit) like any other
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await error_response(scope["path"], 400, "bad_request", "malformed Content-Length header")(
                    scope, receive, send)
                return
            if declared > self.max_bytes:
                await self._too_large(scope["path"])(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._too_large(scope["path"])(scope, receive, send)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await error_response(scope["path"], 408, "request_timeout",
                                 f"the request body did not arrive within {self.timeout:g} s",
                                 headers={"connection": "close"})(scope, receive, send)
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)
