"""The bus between the processes serving one database: PostgreSQL ``LISTEN/NOTIFY``, no other server.

Each process holds two dedicated connections (outside the store's pool): one that LISTENs, from start-up
on, to the events channel and the control channel, and one that publishes. Publishing never waits on the
caller's path: messages are queued and sent in batches, one statement per batch. A NOTIFY payload must stay
under 8,000 bytes: long texts are cut into fragments, each message is kept under :data:`PAYLOAD_LIMIT`;
a terminal message over it goes by reference (:func:`_by_reference`).

Events of run R go to the events channel as ``R.hex`` + a typed message of ``_messages`` (its one codec);
every process receives them and hands them to its subscriptions for R (bounded; one that falls behind is
marked ``overflowed`` and must resync from the log). Control messages (watch, cancel) go to every process;
the owner of the run acts on them. On SQLite and in memory, :class:`LocalBus` stands in: one process, nothing to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ._events import RunError
from ._messages import (
    FRAGMENT_CHARS,
    PAYLOAD_LIMIT,
    BusMessage,
    Control,
    Ended,
    Resync,
    decode,
    decode_control,
    encode,
    encode_control,
)

__all__ = ["CONTROL_CHANNEL", "EVENTS_CHANNEL", "SUBSCRIPTION_LIMIT", "LocalBus", "PgBus", "Subscription"]

log = logging.getLogger("mofa_sdk.server")

EVENTS_CHANNEL = "mofa_run_events"
CONTROL_CHANNEL = "mofa_run_control"
#: messages a subscription holds before it is marked overflowed
SUBSCRIPTION_LIMIT = 1_000


class Subscription:
    """What one follower receives of one run's messages, in order, at most :data:`SUBSCRIPTION_LIMIT`."""

    def __init__(self, bus: LocalBus, run_id: uuid.UUID) -> None:
        self._bus = bus
        self.run_id = run_id
        self._queue: deque[BusMessage] = deque()
        self._ready = asyncio.Event()
        #: True once messages were dropped: the follower must resync from the log
        self.overflowed = False

    def put(self, message: BusMessage) -> None:
        if len(self._queue) >= SUBSCRIPTION_LIMIT:
            self._queue.clear()
            self.overflowed = True
        else:
            self._queue.append(message)
        self._ready.set()

    async def get(self, seconds: float) -> BusMessage | None:
        """The next message, or None after ``seconds`` (or when overflowed: check ``overflowed``)."""
        if not self._queue and not self.overflowed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), seconds)
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        self._bus._unsubscribe(self)


class LocalBus:
    """One process: nothing crosses a process boundary, so nothing is sent."""

    cross_process = False

    def __init__(self) -> None:
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        #: called with each control message received (the run registry sets it)
        self.on_control: Callable[[Control], None] | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def backlog(self) -> int:
        """Messages waiting to be sent to other processes (none in one process)."""
        return 0

    def subscribe(self, run_id: uuid.UUID) -> Subscription:
        sub = Subscription(self, run_id)
        self._subs.setdefault(run_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    def _deliver(self, run_id: uuid.UUID, message: BusMessage) -> None:
        for sub in list(self._subs.get(run_id, ())):
            sub.put(message)

    def publish(self, run_id: uuid.UUID, message: BusMessage) -> None:
        return None

    def control(self, message: Control) -> None:
        return None


class PgBus(LocalBus):
    """LISTEN/NOTIFY on dedicated connections to the store's PostgreSQL database."""

    cross_process = True

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._seq = 0

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return "<PgBus>"

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._publish())]
        # the first LISTEN is in place before the service takes a request: a follower never misses a message
        await asyncio.wait_for(self._listening.wait(), 30)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _connect(self, role: str) -> Any:
        import psycopg

        # named, so that an operator sees them in pg_stat_activity (and a test can cut them)
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, prepare_threshold=None, application_name=f"mofa serve {role}"
        )

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await self._connect("listen")
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                    if self._listening.is_set():
                        # messages may have been missed while reconnecting: every follower resyncs
                        for subs in self._subs.values():
                            for sub in subs:
                                sub.overflowed = True
                                sub._ready.set()
                    self._listening.set()
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("the LISTEN connection was lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            if channel == EVENTS_CHANNEL:
                run_id = uuid.UUID(hex=payload[:32])
                if run_id in self._subs:
                    self._deliver(run_id, decode(payload[32:]))
            elif channel == CONTROL_CHANNEL and self.on_control is not None:
                self.on_control(decode_control(payload))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignored a malformed notification on %s: %s", channel, exc)

    async def _publish(self) -> None:
        import psycopg

        conn: Any = None
        while True:
            channel, payload = await self._outbox.get()
            batch = [(channel, payload)]
            while not self._outbox.empty() and len(batch) < 500:
                batch.append(self._outbox.get_nowait())
            for attempt in range(3):
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect("notify")
                    await conn.execute(
                        "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)",
                        ([c for c, _ in batch], [p for _, p in batch]),
                    )
                    break
                except psycopg.Error as exc:
                    log.warning("publishing %d notifications failed (%s)", len(batch), type(exc).__name__)
                    with contextlib.suppress(Exception):
                        await conn.close()
                    conn = None
                    await asyncio.sleep(0.2 * (attempt + 1))

    @property
    def backlog(self) -> int:
        return self._outbox.qsize()

    def publish(self, run_id: uuid.UUID, message: BusMessage) -> None:
        self._seq += 1
        payload = run_id.hex + encode(message, self._seq)
        if len(payload.encode()) > PAYLOAD_LIMIT:
            payload = run_id.hex + encode(_by_reference(message), self._seq)
        self._outbox.put_nowait((EVENTS_CHANNEL, payload))

    def control(self, message: Control) -> None:
        self._seq += 1
        self._outbox.put_nowait((CONTROL_CHANNEL, encode_control(message, self._seq)))


def _by_reference(message: BusMessage) -> BusMessage:
    """What goes on the bus instead of a message over one NOTIFY payload. Only a terminal message can be
    one (deltas are cut into fragments), and the run's rows hold it whole: with a reply row, a ``Resync``
    sends followers to it (they end from the row, never by asking the owner again, which would publish the
    same oversized message); without one, the error's message is cut to fit (the api-call row keeps it)."""
    if not isinstance(message, Ended) or message.event.assistant_message_id is not None:
        return Resync()
    event = message.event
    if event.error is None:
        return Resync()
    text = event.error.message
    cut = text[:FRAGMENT_CHARS] + f" … ({len(text) - FRAGMENT_CHARS} more characters)"
    return Ended(replace(event, error=RunError(event.error.code, cut)))
