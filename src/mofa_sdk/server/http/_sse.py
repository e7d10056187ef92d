"""Server-sent events framing (the WHATWG format), by hand: one ``id``, one ``event``, one JSON ``data`` line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..runs import RunEvent, event_json

__all__ = ["KEEPALIVE", "SSEResponse", "event_frame", "sse"]

log = logging.getLogger("mofa_sdk.server")

#: a comment line: ignored by clients, keeps proxies and the connection from timing out
KEEPALIVE = b": keepalive\n\n"


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One event. ``data`` is JSON on one line (json escapes newlines), so no frame can be split or forged by
    the text it carries."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def event_frame(event: RunEvent) -> bytes:
    """A run event as the native API sends it: its number is the SSE id, its kind the SSE event name."""
    return sse(event.kind, event_json(event), event.n)


class SSEResponse(Response):
    """An ``text/event-stream`` response that also watches for the client leaving.

    The frames come from a follower; when the client disconnects, the follower is closed at once (even
    while it waits for the next event) and ``on_disconnect`` is called: the run it followed goes on unless
    that callback stops it. A disconnect never reaches the run's task.
    """

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        *,
        headers: dict[str, str] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        # Response's own __init__ would add a Content-Length; FastAPI only needs these two attributes
        self.status_code = 200
        self.background = None
        self.frames = frames
        self.extra_headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(b"content-type", b"text/event-stream; charset=utf-8")]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.extra_headers.items()]
        finished = False

        async def pump() -> None:
            nonlocal finished
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            async for frame in self.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.create_task(pump()), asyncio.create_task(watch())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, OSError):
                    log.error("an event stream failed: %r", result)
            with contextlib.suppress(Exception):
                await self.frames.aclose()
            if not finished and self.on_disconnect is not None:
                self.on_disconnect()
