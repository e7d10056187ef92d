"""Following a run: replay what the follower missed, then the live tail, to the terminal event.

- A run of this process is followed from its own log (a cursor over it: no buffer per follower, so a slow
  client never slows the run, it just gets the events it missed in one go when it reads again).
- A run of another process (PostgreSQL): subscribe to the bus first, then read the reply row (its
  checkpointed deltas), then ask the owner to ``watch`` from there; the owner publishes what came after the
  checkpoint and then the live tail. Events are numbered, so a duplicate is dropped and a gap (a lost or
  overflowed subscription, an oversized payload) is filled from the row again, then by asking again.
- An owner that says nothing for ``owner_timeout_seconds`` (it heartbeats) has died: after one more
  read and one more ask, the follower gets a terminal ``error`` event (``interrupted``), never a hang.
- A finished run, or any run on SQLite that this process does not hold, is replayed from its row.

Each iterator yields lists of run events (what is ready at once goes out in one write), and an empty list
when a keepalive comment is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from ...entities import Message
from ...errors import DatabaseUnavailableError, NotFoundError
from ...persistence import Store
from .._config import ServeConfig
from ._bus import Subscription
from ._events import RunEvent, TerminalEvent, TextDeltaEvent, ToolEvent, terminal_event
from ._log import FINAL_STATUSES, delta_count, events_of_row, terminal_of_row
from ._messages import BusMessage, Control, Deltas, Ended, Resync, event_of_fragment
from ._registry import RunRegistry
from ._run import Principal, Run

__all__ = ["follow_local", "open_follower", "owner_answers"]

log = logging.getLogger("mofa_sdk.server")

#: events sent in one write at most
BATCH = 256


def _not_found(run_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"run {run_id} not found")


def _batches(events: list[RunEvent]) -> list[list[RunEvent]]:
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


def _watch(principal: Principal, run_id: uuid.UUID, after: int) -> Control:
    """Ask the owner for the run's events after ``after`` and from now on (it checks the tenant and user)."""
    return Control("watch", run_id, principal.tenant_id, principal.user_id, after)


async def _row(store: Store, principal: Principal, run_id: uuid.UUID) -> Message | None:
    row = await store.get_message(principal.tenant_id, run_id)
    if row is None or row.role != "assistant" or row.user_id != principal.user_id:
        return None  # another user's reply is not found, exactly like a missing one
    return row


class _DatabaseAway(Exception):
    """The row could not be read: the database is away (the follower waits for it, never ends for it)."""


async def _patient_row(store: Store, principal: Principal, run_id: uuid.UUID) -> Message | None:
    try:
        return await _row(store, principal, run_id)
    except DatabaseUnavailableError as exc:
        raise _DatabaseAway() from exc


async def open_follower(
    registry: RunRegistry, principal: Principal, run_id: uuid.UUID, after: int
) -> AsyncIterator[list[RunEvent]]:
    """The events of run ``run_id`` after number ``after``. Raises NotFoundError before anything is sent
    when the run is unknown to this tenant and user."""
    run = registry.runs.get(run_id)
    if run is not None and run.owned_by(principal):
        return follow_local(run, after, registry.config)
    # another tenant's (or user's) run held here takes the path of a missing id, with the same work: its
    # answer must not reveal, by its timing, that the id exists
    bus, store = registry.bus, registry.store
    if not bus.cross_process:
        row = await _row(store, principal, run_id)
        if row is None:
            raise _not_found(run_id)
        return _replay(store, row, after)
    sub = bus.subscribe(run_id)  # first: nothing published from now on can be missed
    try:
        row = await _row(store, principal, run_id)
        if row is not None and row.status in FINAL_STATUSES:
            sub.close()
            return _replay(store, row, after)
        checkpointed = delta_count(row) if row is not None else 0
        bus.control(_watch(principal, run_id, max(after, checkpointed)))
        first = await sub.get(registry.config.probe_seconds)
        if first is None and not sub.overflowed:
            if row is None:
                raise _not_found(run_id)
            sub.close()  # the row is there and nobody owns it: its process died
            return _replay(store, row, after)
    except BaseException:
        sub.close()
        raise
    return _follow_remote(registry, principal, run_id, after, sub, row, first)


async def owner_answers(registry: RunRegistry, principal: Principal, run_id: uuid.UUID) -> bool:
    """Whether a process holds run ``run_id`` (for this tenant and user): its session's lease is live, which
    its owner renews whatever its provider does (one read, no waiting on the owner)."""
    if not registry.bus.cross_process:
        return False  # one process, and it does not hold the run: whoever held it is gone (a restart)
    return await registry.store.run_holds_session(principal.tenant_id, principal.user_id, run_id)


async def follow_local(run: Run, after: int, config: ServeConfig) -> AsyncIterator[list[RunEvent]]:
    sent = after
    while True:
        events = run.events_after(sent)
        for batch in _batches(events):
            yield batch
        if events:
            sent = events[-1].n
            if events[-1].terminal:
                return
        if run.terminal is not None:  # the follower had everything already
            return
        before = len(run.parts)
        await run.wait_change(config.keepalive_seconds)
        if len(run.parts) == before and run.terminal is None:
            yield []


async def _replay(store: Store, row: Message, after: int) -> AsyncIterator[list[RunEvent]]:
    events: list[RunEvent] = [*events_of_row(row, after)]
    terminal = await terminal_of_row(store, row, after=after)
    if after < terminal.n:
        events.append(terminal)
    for batch in _batches(events):
        yield batch


async def _follow_remote(
    registry: RunRegistry,
    principal: Principal,
    run_id: uuid.UUID,
    after: int,
    sub: Subscription,
    row: Message | None,
    first: BusMessage | None,
) -> AsyncIterator[list[RunEvent]]:
    store, bus, config = registry.store, registry.bus, registry.config
    sent = after
    held: dict[int, TextDeltaEvent | ToolEvent] = {}  # numbered events that arrived ahead of a gap
    fragments: dict[int, list[str]] = {}
    end: TerminalEvent | None = None
    pending: list[BusMessage] = [first] if first is not None else []
    last_heard = last_sent = last_progress = time.monotonic()

    def take(event: TextDeltaEvent | ToolEvent) -> None:
        if event.n > sent:
            held[event.n] = event

    def ready() -> list[RunEvent]:
        nonlocal sent
        out: list[RunEvent] = []
        while sent + 1 in held:
            sent += 1
            out.append(held.pop(sent))
        return out

    try:
        if row is not None:
            for batch in _batches([*events_of_row(row, sent)]):
                yield batch
                sent = batch[-1].n
        while True:
            if sub.overflowed:
                # messages were dropped: what they held is in the row (checkpoints) or with the owner
                log.warning("a follower of run %s fell behind after event %d; resuming from the log", run_id, sent)
                pending.clear()
                try:
                    fresh = await _patient_row(store, principal, run_id)
                except _DatabaseAway:
                    # the database is away (its restart also cut the LISTEN connection): wait, then resync
                    yield []
                    await asyncio.sleep(1.0)
                    continue
                sub.overflowed = False
                if fresh is not None and fresh.status in FINAL_STATUSES:
                    # the run is over and its row holds everything (a terminal message too large for the
                    # bus comes this way): the rest and the end from the row, never by asking again
                    async for replayed in _replay(store, fresh, sent):
                        yield replayed
                    return
                if fresh is not None:
                    for batch in _batches([*events_of_row(fresh, sent)]):
                        yield batch
                        sent = batch[-1].n
                bus.control(_watch(principal, run_id, sent))
                continue
            message = pending.pop(0) if pending else await sub.get(min(config.keepalive_seconds, 0.5))
            now = time.monotonic()
            if message is None:
                if end is None and now - last_heard > config.owner_timeout_seconds:
                    try:
                        fresh = await _patient_row(store, principal, run_id)
                    except _DatabaseAway:
                        # an outage silences the owner too (its bus is cut): not a sign that it died
                        last_heard = last_sent = time.monotonic()
                        yield []
                        continue
                    if fresh is not None and fresh.status in FINAL_STATUSES:
                        async for replayed in _replay(store, fresh, sent):
                            yield replayed
                        return
                    bus.control(_watch(principal, run_id, sent))
                    answer = await sub.get(config.probe_seconds)
                    if answer is None and not sub.overflowed:
                        if fresh is None:  # nothing was ever saved and nobody holds the run any more
                            yield [terminal_event(sent + 1, "interrupted", user_message_id=None,
                                                 assistant_message_id=None, code="interrupted",
                                                 message="the process running this reply stopped before saving it")]
                            return
                        async for replayed in _replay(store, fresh, sent):
                            yield replayed
                        return
                    if answer is not None:
                        pending.append(answer)
                    continue
                if end is not None and now - last_progress > config.owner_timeout_seconds:
                    # the end is known and nobody fills the gap before it (the owner forgot the run, its final
                    # write failed): what the row holds, then the end; never a hang
                    if end.n > sent:
                        yield [end]
                    return
                if held or end is not None:
                    if now - last_heard > config.probe_seconds:  # a gap nothing filled: ask again
                        last_heard = now
                        bus.control(_watch(principal, run_id, sent))
                elif now - last_sent >= config.keepalive_seconds:
                    last_sent = now
                    yield []
                continue
            last_heard = now
            if isinstance(message, Deltas):
                for f in message.fragments:
                    if f.more:
                        fragments.setdefault(f.n, []).append(f.text)
                        continue
                    take(event_of_fragment(f.n, f.kind, "".join([*fragments.pop(f.n, []), f.text])))
            elif isinstance(message, Ended):
                end = message.event
            elif isinstance(message, Resync):
                pending.clear()
                sub.overflowed = True
                continue
            batch = ready()
            if batch:
                yield batch
                last_sent = last_progress = now
            if end is not None:
                if sent >= end.n - 1:
                    if end.n > sent:  # a Last-Event-ID past the end gets nothing, as on the owner's process
                        yield [end]
                    return
                # the end came before some deltas: the final write has landed, the row holds them all
                fresh = await _row(store, principal, run_id)
                if fresh is not None:
                    for event in events_of_row(fresh, sent):
                        held.setdefault(event.n, event)
                    batch = ready()
                    if batch:
                        yield batch
                    if sent >= end.n - 1:
                        if end.n > sent:
                            yield [end]
                        return
    finally:
        sub.close()
