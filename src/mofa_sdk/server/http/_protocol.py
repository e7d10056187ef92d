"""uvicorn's HTTP/1.1 protocol with the limits it lacks: a deadline for a request's headers, and a cap on
open connections answered with a clean 503 (issue 24, slowloris); and the JSON error shape for a request it
cannot parse (a malformed ``Content-Length``, a bad request line), which never reaches the app.

uvicorn holds a connection that sends part of a request line or of its headers for as long as the client
likes, and accepts connections until the process runs out of file descriptors (then its accept loop logs
an error per attempt). Here a request's headers must be complete within ``header_timeout_seconds`` of the
connection (or of the previous response on a kept-alive one), else the connection gets a 408 and is
closed; a connection over ``max_connections`` (capped below the descriptor limit) gets a 503 and is
closed at once. Both are logged at most once per :data:`LOG_EVERY` seconds, with a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._config import ServeConfig

__all__ = ["LOG_EVERY", "GuardedH11Protocol"]

log = logging.getLogger("mofa_sdk.server")

#: seconds between two log lines about refused or timed-out connections
LOG_EVERY = 10.0
#: how long an answered connection stays open for what the client still sends (dropped), before it is closed
LINGER_SECONDS = 1.0
#: file descriptors kept free of client connections (the database pool, the bus, logs, files)
RESERVED_FDS = 64


def _raw_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "type": "server_error" if status >= 500
                                 else "invalid_request_error", "param": None}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n" + ("retry-after: 1\r\n" if status == 503 else "") + "\r\n")
    return head.encode() + body


_BUSY = _raw_response(503, "Service Unavailable", "unavailable", "too many open connections; retry shortly")
_SLOW = _raw_response(408, "Request Timeout", "request_timeout", "the request's headers did not arrive in time")


class _Counter:
    """Counts events and logs them at most once per :data:`LOG_EVERY` seconds (no flood under attack)."""

    def __init__(self, what: str) -> None:
        self.what, self.count, self.logged = what, 0, 0.0

    def add(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged >= LOG_EVERY:
            log.warning("%d %s in the last %.0f s", self.count, self.what, LOG_EVERY if self.logged else 0)
            self.count, self.logged = 0, now


class GuardedH11Protocol(H11Protocol):
    """Give it to uvicorn as ``http=``; :meth:`configure` sets the limits of the process."""

    header_timeout: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 1000
    _refused: ClassVar[_Counter] = _Counter("connections refused over the connection limit")
    _slow: ClassVar[_Counter] = _Counter("connections closed: headers not complete in time")

    @classmethod
    def configure(cls, config: ServeConfig) -> None:
        """The process's limits, from the service's settings; ``max_connections`` is capped below the
        file descriptors the process may open, so that accepting never fails for want of one."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = soft - RESERVED_FDS - config.pool_size if soft != resource.RLIM_INFINITY else config.max_connections
        cls.header_timeout = config.header_timeout_seconds
        cls.max_connections = max(1, min(config.max_connections, cap))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        #: answered and closing: what the client still sends is read and dropped
        self._closing = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused.add()
            self._answer_and_close(_BUSY)
            return
        self._arm()

    def send_400_response(self, msg: str) -> None:
        # a request uvicorn cannot parse (a malformed Content-Length, a bad request line) never reaches the app:
        # it gets the service's JSON error shape here, not uvicorn's plain-text line
        detail = msg.rstrip(".") or "invalid request"
        self._answer_and_close(_raw_response(400, "Bad Request", "bad_request",
                                             f"the HTTP request could not be parsed: {detail}"))

    def _answer_and_close(self, response: bytes) -> None:
        """Send ``response``, end our side, and close shortly after: closing with the client's bytes unread
        would reset the connection before it reads the answer."""
        self._closing = True
        self._disarm()
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._slow.add()
            self._answer_and_close(_SLOW)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        super().data_received(data)
        if self._deadline is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()  # the request line and headers are in: the body has its own deadline

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
