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
from ._errors import api_of

__all__ = ["KEEPALIVE", "SSEResponse", "event_frame", "sse"]

log = logging.getLogger("mofa_sdk.server")

#: a comment line: ignored by clients, keeps proxies and the connection from timing out
KEEPALIVE = b": keepalive\n\n"
#: after its runs ended, a stopping process gives a stream this long to send its terminal event
SETTLE_SECONDS = 1.0
#: what a stream still open then gets (it follows a run of another process): reconnect, with Last-Event-ID,
#: to a process that is not stopping. OpenAI's formats get the ``retry`` field only (their clients would
#: take any ``data`` for a chunk); the native API a ``retry`` event too.
_RETRY = "the process serving this stream is stopping; reconnect with Last-Event-ID to resume on another"
RETRY_OPENAI = b"retry: 1000\n: " + _RETRY.encode() + b"\n\n"


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One event. ``data`` is JSON on one line (json escapes newlines), so no frame can be split or forged by
    the text it carries."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


RETRY_NATIVE = b"retry: 1000\n" + sse("retry", {"reason": "shutdown", "message": _RETRY})


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

        async def stop(pumping: asyncio.Task[None], drained: asyncio.Event) -> None:
            """The process stops: once its runs ended (their terminal events on the way), a stream still
            open is told to reconnect elsewhere, then closed."""
            nonlocal finished
            await drained.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pumping), SETTLE_SECONDS)
            if pumping.done():
                return
            pumping.cancel()
            with contextlib.suppress(BaseException):
                await pumping
            retry = RETRY_OPENAI if api_of(scope.get("path", "")) == "openai" else RETRY_NATIVE
            await send({"type": "http.response.body", "body": retry, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True

        pumping = asyncio.create_task(pump())
        tasks = [pumping, asyncio.create_task(watch())]
        drained = _drained_of(scope)
        if drained is not None:
            tasks.append(asyncio.create_task(stop(pumping, drained)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pumping.cancelled() and len(tasks) == 3:  # stopped by ``stop``: let it say so
                await tasks[2]
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


def _drained_of(scope: Scope) -> asyncio.Event | None:
    """The run registry's ``drained`` event, when the app is the service's (its registry says when a stopping
    process has no run left)."""
    services = getattr(scope.get("app"), "services", None)
    registry = getattr(services, "registry", None)
    drained = getattr(registry, "drained", None)
    return drained if isinstance(drained, asyncio.Event) else None
