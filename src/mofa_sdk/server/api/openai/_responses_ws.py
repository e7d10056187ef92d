"""WebSocket mode of the Responses API: ``GET /v1/responses`` upgraded to a WebSocket (authenticated by the
same bearer key, in the handshake's headers). The client sends ``{"type": "response.create", …}`` messages
whose other fields are those of ``POST /v1/responses`` (``stream`` and ``background`` are the transport's and
ignored); for each, the server sends the events the SSE stream would carry, one JSON text message each, up to
the terminal one, then reads the next message. A request that fails sends one ``error`` message (its HTTP
status and OpenAI's error object) and the socket stays open.

Every response is a run written to the database as over HTTP. ``store: false`` responses can be continued by
``previous_response_id`` only on the socket that made them (OpenAI's connection-local cache): elsewhere, as
after a reconnect, the id is ``previous_response_not_found``. A continuation that fails drops its previous
response from that cache.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ...http import ApiError, Services, error_payload
from ...runs import Principal, RunRegistry, follow_local
from ._responses import previous_not_found, request_meta, response_events, start_response
from ._shapes import decode_id
from .schemas import ResponseCreate

__all__ = ["router"]

router = APIRouter(tags=["openai: responses"])
PATH = "/v1/responses"
#: fields of a ``response.create`` message that belong to the transport, not to the response
_TRANSPORT = ("type", "stream", "background")


def _response_id(raw: str) -> uuid.UUID | None:
    try:
        return decode_id("resp", raw, "response")
    except ApiError:
        return None


class _Socket:
    """One connection: who it acts as, and the ``store: false`` responses it made (continuable here only)."""

    def __init__(self, ws: WebSocket, registry: RunRegistry, who: Principal) -> None:
        self.ws, self.registry, self.who = ws, registry, who
        self.unstored: set[uuid.UUID] = set()

    async def send_error(self, exc: Exception) -> None:
        status, body = error_payload(PATH, exc)
        await self.ws.send_text(json.dumps({"type": "error", "status": status, **body}, ensure_ascii=False))

    async def _check_previous(self, raw: str, prev: uuid.UUID | None) -> None:
        """A ``store: false`` previous response made on another socket is not found here."""
        if prev is None:
            raise previous_not_found(raw)
        if prev not in self.unstored:
            meta = await request_meta(self.registry, self.who, prev)
            if meta is None or meta.get("store") is False:
                raise previous_not_found(raw)

    async def create(self, message: dict[str, Any]) -> None:
        """One ``response.create``: its events, or one error message."""
        raw = message.get("previous_response_id")
        prev = _response_id(raw) if isinstance(raw, str) and raw else None
        try:
            fields = {k: v for k, v in message.items() if k not in _TRANSPORT}
            try:
                body = ResponseCreate.model_validate(fields)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            if body.previous_response_id:
                await self._check_previous(body.previous_response_id, prev)
            run = await start_response(self.registry, self.who, body)
        except Exception as exc:  # every failure is answered on the socket, which stays open
            if prev is not None:  # a failed continuation drops its previous response from the cache
                self.unstored.discard(prev)
            await self.send_error(exc)
            return
        if body.store is False:
            self.unstored.add(run.id)
        stream = response_events(self.registry, self.who, run.id, follow_local(run, 0, self.registry.config), -1)
        try:
            async for batch in stream:
                for event in batch or ():  # None: a quiet interval, nothing to send
                    await self.ws.send_text(json.dumps(event, ensure_ascii=False))
        finally:
            await stream.aclose()
        if run.status != "complete" and prev is not None:
            self.unstored.discard(prev)


@router.websocket(PATH)
async def responses_socket(ws: WebSocket) -> None:
    """WebSocket mode: several ``response.create`` messages on one socket, each streamed as its events."""
    services = getattr(ws.app, "services", None)
    who = ws.scope.get("state", {}).get("principal")
    if not isinstance(services, Services) or not isinstance(who, Principal):  # not started, or no auth in front
        await ws.close(code=1011)
        return
    await ws.accept()
    socket = _Socket(ws, services.registry, who)
    try:
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            data: str | bytes = frame.get("text") or frame.get("bytes") or b""  # a text frame, or a binary one
            try:
                message = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError):
                await socket.send_error(ApiError(400, "a message must be a JSON object", "invalid_json"))
                continue
            if not isinstance(message, dict) or message.get("type") != "response.create":
                kind = message.get("type") if isinstance(message, dict) else None
                await socket.send_error(ApiError(400, f"unsupported message type {str(kind)[:80]!r}: send "
                                                      "'response.create'", "invalid_request", param="type"))
                continue
            await socket.create(message)
    except WebSocketDisconnect:
        return  # a run goes on and is saved: a client that leaves ends only its follower

