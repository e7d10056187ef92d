"""Automatic persistence: the bridge between an agent's turn hooks and a store.

What is written when (DESIGN §3):

- ``before_call``: the user message, before the provider is called;
- while streaming: a checkpoint of the partial reply at most every ``checkpoint_interval`` seconds (the first
  inserts the assistant row as ``streaming``, later ones update it), so a crash loses at most one interval.
  A checkpoint runs beside the stream, at most one at a time, so a slow or dead database never holds up
  the deltas;
- when a model call ends in tool calls (``on_tool_calls``): the assistant message making them and that call's
  api-call record, in one transaction, before any of its tools runs (a checkpoint of its text, written under
  the reply's id while it streamed, is replaced by it); then each tool result as it arrives
  (``on_tool_result``), the results of calls that were cancelled or never ran included;
- when the turn ends (complete, error or cancelled): the assistant reply with its final status and the
  api-call record, in one transaction (a turn that ended while its tools ran has no reply and no call
  in progress: nothing more is written).

If a finishing write fails, the reply is kept in memory (``pending``), retried before the next turn, by
``flush()`` and when the plugin is closed (within ``flush_timeout``), and an :class:`UnsavedReplyError`
carrying it is raised to the consumer after the stream. A reply whose session was deleted meanwhile cannot
be written anywhere: it is handed back once (in that error, ``reply.session_deleted`` set) and dropped
with a warning, never retried, so later turns are not held up by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ..entities import LLMApiCall, Message, MessageStatus, Session, SessionSettings
from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    NotFoundError,
    PersistenceError,
    TenantMismatchError,
    UnsavedReplyError,
)
from ..ids import parse_uuid, uuid7
from ..llm import (
    ChatMessage,
    EventHandler,
    OpenedSession,
    SessionInfo,
    Settle,
    ToolCall,
    ToolStep,
    Turn,
    TurnResult,
    settings_changes,
    settle_tool_messages,
    traced,
)
from ._calls import call_fields
from ._chat_rows import chat_message, message_row, stored_tool_calls
from ._protocols import PluginStore, WindowReader
from ._sessions import find_session, open_session
from ._store import UNSET, Store

__all__ = ["PendingReply", "PersistencePlugin"]

log = logging.getLogger("mofa_sdk.persistence")
#: a failed checkpoint: the turn's own outcome (saved, or UnsavedReplyError) follows when it ends
checkpoint_log = logging.getLogger("mofa_sdk.persistence.checkpoint")

#: the reply row's final status: a turn ends complete, cancelled or in error
_STATUS: dict[str, MessageStatus] = {"complete": "complete", "cancelled": "cancelled", "error": "error"}
#: ``db.system.name`` of the OpenTelemetry conventions, by store dialect
_DB_SYSTEMS = {"postgres": "postgresql", "sqlite": "sqlite"}
#: seconds between two tries of a bounded flush while the database is unavailable
_RETRY_PAUSE = 0.25


@dataclass
class PendingReply:
    """A finished turn whose rows could not be written yet."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    message: Message | None
    #: True when the assistant row already exists (checkpointed) and only needs updating
    update_existing: bool
    call: LLMApiCall
    errors: list[str] = field(default_factory=list)
    #: True when a failed write may still have reached the database (so the row may exist already)
    uncertain: bool = False
    #: True when the session was deleted before the reply could be written: it is dropped, not retried
    session_deleted: bool = False
    #: True when a checkpointed row must be replaced (the reply makes tool calls, which an update cannot add)
    replace_existing: bool = False

    def describe(self) -> str:
        what = f"reply {self.message.id}" if self.message is not None else f"api call {self.call.id}"
        return f"{what} of session {self.session_id}"


@dataclass(eq=False)
class _Progress:
    """The plugin's own bookkeeping of one turn, from ``before_call`` to the final write."""

    user_message_id: uuid.UUID
    reply_id: uuid.UUID
    call_id: uuid.UUID
    last_checkpoint: float
    #: where each delta ends (cumulative character offsets), when the plugin records them
    delta_ends: list[int] | None
    #: True once a checkpoint inserted the reply row (later ones update it)
    checkpointed: bool = False
    checkpoint_failed: bool = False
    #: updates of the checkpointed row that failed (retried at the next interval; the first is logged)
    update_failures: int = 0
    checkpoint_task: asyncio.Task[None] | None = None
    #: the calls of the saved step whose results are not saved yet, and the task keeping that step's row fresh
    open_calls: set[str] = field(default_factory=set)
    heartbeat: asyncio.Task[None] | None = None

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    def offsets(self) -> list[int] | None:
        """The offsets as they are now (a copy: the list grows while a checkpoint is written)."""
        return list(self.delta_ends) if self.delta_ends is not None else None


def _optional_uuid(value: uuid.UUID | str | None, what: str) -> uuid.UUID | None:
    return None if value is None else parse_uuid(value, what)


class PersistencePlugin(EventHandler):
    """Makes every turn of the agent it is attached to persist. Build with :meth:`from_store`."""

    def __init__(
        self,
        plugin_id: str,
        store: Store | None,
        user_id: uuid.UUID | str | None,
        tenant_id: uuid.UUID | str | None,
        agent_id: uuid.UUID | str | None,
        session_id: uuid.UUID | str | None = None,
        *,
        checkpoint_interval: float = 1.0,
        flush_timeout: float = 5.0,
        store_factory: Callable[[], Awaitable[Store]] | None = None,
        owns_store: bool = False,
        record_delta_offsets: bool = False,
    ) -> None:
        if store is None and store_factory is None:
            raise ConfigError("PersistencePlugin needs a store")
        if not checkpoint_interval > 0:
            raise ConfigError(f"checkpoint_interval must be > 0 seconds, got {checkpoint_interval!r}")
        _check_timeout(flush_timeout, "flush_timeout")
        self.plugin_id = plugin_id
        self._store = store
        self._store_factory = store_factory
        self._owns_store = owns_store
        self.user_id = _optional_uuid(user_id, "user_id")
        self.tenant_id = _optional_uuid(tenant_id, "tenant_id")
        self.agent_id = _optional_uuid(agent_id, "agent_id")
        self.session_id = _optional_uuid(session_id, "session_id")
        self.checkpoint_interval = checkpoint_interval
        #: how long ``close()`` (and so ``agent.aclose()``) tries to write pending replies
        self.flush_timeout = flush_timeout
        #: also store where each delta ends (``Message.delta_ends``, cumulative character offsets) and
        #: checkpoint at the first delta, so that a reader of the database can rebuild the stream event by
        #: event (``mofa serve`` resumes runs from it)
        self.record_delta_offsets = record_delta_offsets
        self.pending: list[PendingReply] = []
        self._written = 0  # pending replies written so far (what flush() counts)
        self._flushing = asyncio.Lock()  # turns on two sessions flush at once: one writes, one waits
        #: this plugin's key in ``turn.state`` (its ``_Progress``): another plugin on the agent has its own
        self._key = f"{__name__}:{id(self)}"
        #: a session the caller already read (``adopt``): its next open uses it instead of reading it again
        self._adopted: Session | None = None

    @classmethod
    def from_store(
        cls,
        plugin_id: str,
        store: Store,
        user_id: uuid.UUID | str,
        tenant_id: uuid.UUID | str,
        agent_id: uuid.UUID | str,
        session_id: uuid.UUID | str | None = None,
        *,
        checkpoint_interval: float = 1.0,
        flush_timeout: float = 5.0,
    ) -> PersistencePlugin:
        """The seed's constructor. ``session_id=None`` starts a new session when the agent is built."""
        return cls(
            plugin_id,
            store,
            user_id,
            tenant_id,
            agent_id,
            session_id,
            checkpoint_interval=checkpoint_interval,
            flush_timeout=flush_timeout,
        )

    def __repr__(self) -> str:
        return f"PersistencePlugin({self.plugin_id!r}, store={type(self._store).__name__}, session={self.session_id})"

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ConfigError("the plugin's store is not connected yet: build the agent with build_async()")
        return self._store

    @property
    def _rows(self) -> PluginStore:
        """The store, as far as the turn hooks use it."""
        return self.store

    async def connect(self) -> Store:
        if self._store is None:
            assert self._store_factory is not None
            self._store = await self._store_factory()
        return self._store

    async def close(self) -> None:
        """Try to write the pending replies (within ``flush_timeout``; a warning names those that could not
        be written, which stay in ``pending``), then close the store if the plugin opened it."""
        try:
            if self.pending and self._store is not None:
                try:
                    await self.flush(within=self.flush_timeout)
                except PersistenceError as exc:
                    log.warning(
                        "%s: %d unsaved %s could not be written before closing (%s): %s",
                        self.plugin_id, len(self.pending), "reply" if len(self.pending) == 1 else "replies",
                        exc, "; ".join(p.describe() for p in self.pending),
                    )
        finally:
            if self._owns_store and self._store is not None:
                await self._store.close()
                self._store = None

    # -- sessions (SessionBackend) ---------------------------------------------------------------------
    #: True where a reply's calls may be answered by the client in a later request (``mofa serve``): the
    #: calls of the session's last message are then never recorded as interrupted when it is opened
    client_answers_calls = False

    def adopt(self, session: Session) -> None:
        """Hand the plugin a session row the caller has just read with the owner check (the turn engine
        does): the next open of that session uses it instead of reading it again."""
        self._adopted = session

    def _take_adopted(
        self, session_id: uuid.UUID | None, tenant_id: uuid.UUID, user_id: uuid.UUID
    ) -> Session | None:
        adopted, self._adopted = self._adopted, None
        if adopted is None or adopted.id != session_id:
            return None
        if adopted.tenant_id != tenant_id or adopted.user_id != user_id:  # never another owner's row
            raise TenantMismatchError(f"session {session_id} belongs to another user; nothing was read or written")
        return adopted

    async def open_session(
        self,
        session_id: uuid.UUID | None,
        *,
        window: int | None,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> tuple[uuid.UUID, list[ChatMessage]]:
        store: PluginStore = await self.connect()
        adopted = self._take_adopted(session_id, tenant_id, user_id)
        if adopted is not None:
            session, created = adopted, False
        else:
            session, created = await open_session(store, tenant_id, user_id, agent_id, session_id)
        if created:
            return session.id, []
        await store.mark_interrupted(tenant_id, session.id)
        return session.id, await _load_window(store, tenant_id, session.id, window)

    async def open_with_settings(
        self,
        session_id: uuid.UUID | None,
        *,
        settle: Settle,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> OpenedSession:
        """Load (or create) the session and settle what it runs with (``SettingsBackend``): a new session
        is created with its settings, a resumed one records them (and what changed) in one write when they
        differ from what it had; then the settled window is read."""
        store: PluginStore = await self.connect()
        found = self._take_adopted(session_id, tenant_id, user_id)
        if found is None and session_id is not None:
            found = await find_session(store, tenant_id, user_id, session_id)
        if found is None:
            settings = settle(None)  # before the row is written: a refused setting writes nothing
            # create_session refuses (TenantMismatchError, nothing written) an id another tenant holds
            created = await store.create_session(Session(
                id=session_id or uuid7(), tenant_id=tenant_id, user_id=user_id, agent_id=agent_id,
                settings=settings,
            ))
            return OpenedSession(created.id, [], settings, created=True)
        settings = settle(found.settings)
        if _recorded(settings) != _recorded(found.settings):
            await store.record_session_settings(
                tenant_id, found.id, settings, settings_changes(found.settings, settings)
            )
        await store.mark_interrupted(tenant_id, found.id)
        window = await _load_window(store, tenant_id, found.id, settings.window,
                                    keep_last_open=self.client_answers_calls)
        return OpenedSession(found.id, window, settings, created=False)

    async def list_sessions(
        self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 50
    ) -> list[SessionInfo]:
        store: PluginStore = await self.connect()
        return list(await store.get_user_sessions(tenant_id, user_id, limit=limit))

    # -- turn hooks ----------------------------------------------------------------------------------
    async def before_call(self, turn: Turn) -> None:
        await self.flush()
        # a handler that ran first may have named the reply (``mofa serve`` names a run after it)
        if turn.reply_id is None:
            turn.reply_id = uuid7()
        if turn.api_call_id is None:
            turn.api_call_id = uuid7()
        with self._span("save user_message"):
            saved = await self._save_user_message(
                turn,
                Message(
                    session_id=turn.session_id,
                    tenant_id=turn.tenant_id,
                    user_id=turn.user_id,
                    agent_id=turn.agent_id,
                    role="user",
                    content=turn.user_text,
                    request_params=turn.request_params,
                ),
            )
        turn.user_message_id = saved.id
        turn.state[self._key] = _Progress(
            saved.id, turn.reply_id, turn.api_call_id, time.monotonic(), [] if self.record_delta_offsets else None,
            # with offsets recorded (``mofa serve``) the reply row was written with the user message
            checkpointed=self.record_delta_offsets,
        )

    def _opening_reply(self, turn: Turn, user_message_id: uuid.UUID) -> Message | None:
        """With offsets recorded (``mofa serve``): the reply's row, ``streaming`` and empty, to be written in
        the user message's transaction, so that it exists before any delta reaches a client (a kill -9 then
        leaves a reply to resume or mark interrupted, never a run with no row). Later checkpoints update it;
        a provider that fails before its first token leaves it an empty ``error`` reply."""
        if not self.record_delta_offsets or turn.reply_id is None:
            return None
        return Message(
            id=turn.reply_id, session_id=turn.session_id, tenant_id=turn.tenant_id, user_id=turn.user_id,
            agent_id=turn.agent_id, role="assistant", content="", status="streaming",
            parent_message_id=user_message_id, delta_ends=[],
        )

    async def _save_user_message(self, turn: Turn, message: Message) -> Message:
        """Write the turn's user message (the turn engine's plugin writes a session that is not written yet
        and the turn's earlier messages with it, in one transaction)."""
        reply = self._opening_reply(turn, message.id)
        if reply is None:
            return await self._rows.save_message(message)
        store = self._rows
        async with store.transaction() as tx:
            saved = await store.save_message(message, tx=tx)
            await store.save_message(reply.model_copy(update={"parent_message_id": saved.id}), tx=tx)
        return saved

    async def on_delta(self, turn: Turn, delta: str) -> None:
        p: _Progress | None = turn.state.get(self._key)  # set by before_call only
        if p is None:
            return
        first = False
        if p.delta_ends is not None:
            p.delta_ends.append((p.delta_ends[-1] if p.delta_ends else 0) + len(delta))
            first = len(p.delta_ends) == 1
        if p.checkpoint_failed:
            return
        if p.checkpoint_task is not None and not p.checkpoint_task.done():
            return  # one checkpoint at a time: a slow database gets fewer, never a queue of them
        now = time.monotonic()
        if now - p.last_checkpoint < self.checkpoint_interval and not first:
            return
        p.last_checkpoint = now
        # Beside the stream, not in it: a checkpoint waiting on a dead database (up to its connect
        # timeout) must not hold up the deltas the user is reading.
        # The text and its offsets as they are now: the task may run after more deltas came.
        p.checkpoint_task = asyncio.create_task(self._checkpoint(turn, p, turn.text, p.offsets()))

    def _span(self, what: str) -> AbstractContextManager[Any]:
        """A span around one of the turn's writes (a child of the turn's span); nothing without a tracing SDK."""
        system = _DB_SYSTEMS.get(getattr(self._rows, "dialect", ""), "other_sql")
        return traced(f"mofa.persist {what}", **{"db.system.name": system, "db.operation.name": what})

    async def _checkpoint(self, turn: Turn, p: _Progress, text: str, offsets: list[int] | None) -> None:
        try:
            with self._span("checkpoint"):
                if p.checkpointed:
                    await self._rows.update_message(
                        turn.tenant_id, p.reply_id, content=text, delta_ends=UNSET if offsets is None else offsets
                    )
                else:
                    await self._rows.save_message(_reply_message(turn, p, text, "streaming", offsets))
                    p.checkpointed = True
        except Exception as exc:  # a task of its own: nobody else would see the error
            # A checkpoint is insurance against a crash; losing the database must not cut the reply the
            # user is reading.
            if p.checkpointed:
                # an update of a row that exists is idempotent: the next interval tries again, so a pool
                # busy for a moment (300 runs checkpointing) does not end the turn's checkpoints for good
                p.update_failures += 1
                if p.update_failures == 1:
                    checkpoint_log.warning("checkpoint of reply %s failed; retried at the next interval: %s",
                                           p.reply_id, exc)
                return
            # the insert may have landed or not: stop checkpointing this turn; the final write (or `pending`),
            # which then checks what landed, carries it
            p.checkpoint_failed = True
            checkpoint_log.warning("checkpoint of reply %s failed; the reply keeps streaming: %s", p.reply_id, exc)

    async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
        """The assistant message making calls and its model call's record, in one transaction; raises (and no
        tool runs) when they cannot be written."""
        p: _Progress | None = turn.state.get(self._key)
        if p is None:
            return
        if p.checkpoint_task is not None:
            await asyncio.shield(p.checkpoint_task)  # never raises (see _checkpoint)
        row = message_row(step.message, session_id=turn.session_id, tenant_id=turn.tenant_id, user_id=turn.user_id,
                          agent_id=turn.agent_id, parent_message_id=p.user_message_id, status="complete")
        call = LLMApiCall(
            id=uuid7(), tenant_id=turn.tenant_id, session_id=turn.session_id, user_id=turn.user_id,
            agent_id=turn.agent_id, request_message_id=p.user_message_id, response_message_id=row.id,
            model_name=step.result.model or turn.model, **call_fields(step.result),
        )
        store = self._rows
        with self._span("save tool_step"):
            async with store.transaction() as tx:
                if p.checkpointed or p.checkpoint_failed:
                    # the step's text was checkpointed under the final reply's id; that id names the final reply
                    await store.delete_message(turn.tenant_id, p.reply_id, tx=tx)
                await store.save_message(row, tx=tx)
                await store.save_api_call(call, tx=tx)
        # While its tools run, the step's row is touched well within the store's streaming lease: another
        # process opening the session then sees a live turn and records no "interrupted" answer for a call
        # whose tool is still running (it would hide the real result, which is saved too).
        p.stop_heartbeat()
        p.open_calls = {c.id for c in step.message.tool_calls}
        p.heartbeat = asyncio.create_task(self._keep_fresh(turn.tenant_id, row.id))
        # the next model call streams afresh under the reply's id
        p.checkpointed = p.checkpoint_failed = False
        p.checkpoint_task = None
        p.last_checkpoint = time.monotonic()
        if p.delta_ends is not None:
            p.delta_ends = []

    async def on_tool_result(self, turn: Turn, message: ChatMessage) -> None:
        p: _Progress | None = turn.state.get(self._key)
        if p is None:
            return
        with self._span("save tool_result"):
            await self._rows.save_message(message_row(
                message, session_id=turn.session_id, tenant_id=turn.tenant_id, user_id=turn.user_id,
                agent_id=turn.agent_id, parent_message_id=p.user_message_id,
            ))
        if message.tool_call_id is not None:
            p.open_calls.discard(message.tool_call_id)
        if not p.open_calls:
            p.stop_heartbeat()

    async def _keep_fresh(self, tenant_id: uuid.UUID, step_id: uuid.UUID) -> None:
        """Touch the step's row (its update_time) every third of the lease until its calls are answered."""
        lease = getattr(self._rows, "streaming_lease_seconds", 5.0)
        every = max(lease / 3, 0.01)
        while True:
            await asyncio.sleep(every)
            try:
                await self._rows.update_message(tenant_id, step_id)
            except Exception as exc:  # a task of its own: the tools and their result writes go on regardless
                checkpoint_log.warning("keeping tool step %s fresh failed: %s", step_id, exc)

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def _finish(self, turn: Turn, result: TurnResult) -> None:
        p: _Progress | None = turn.state.get(self._key)  # set by before_call only
        if p is None:  # before_call never ran for this plugin
            return
        p.stop_heartbeat()  # the turn is over: its open calls are answered (or it was cut, and then nobody runs them)
        if p.checkpoint_task is not None:
            # the final write must know whether the checkpoint's row exists; it never raises (see above)
            await asyncio.shield(p.checkpoint_task)
        if result.ended_in_tools and not (result.text or p.checkpointed):
            return  # its steps and results are saved; no model call was in progress
        status = _STATUS.get(result.status, "error")
        keep = result.text or p.checkpointed or result.tool_calls
        message = _reply_message(turn, p, result.text, status, tool_calls=result.tool_calls) if keep else None
        call = LLMApiCall(
            id=p.call_id,
            tenant_id=turn.tenant_id,
            session_id=turn.session_id,
            user_id=turn.user_id,
            agent_id=turn.agent_id,
            request_message_id=p.user_message_id,
            response_message_id=message.id if message else None,
            model_name=result.model or turn.model,
            **call_fields(result),
        )
        pending = PendingReply(turn.tenant_id, turn.session_id, message, p.checkpointed, call,
                               uncertain=p.checkpoint_failed,
                               replace_existing=bool(result.tool_calls) and p.checkpointed)
        try:
            with self._span("save reply"):
                await self._write(pending)
        except PersistenceError as exc:
            pending.errors.append(str(exc))
            pending.uncertain = True
            if await self._session_gone(pending, exc):
                log.warning("%s: %s was not saved: the session was deleted while it streamed; it is dropped",
                            self.plugin_id, pending.describe())
                raise UnsavedReplyError(
                    f"the reply was streamed but not saved: session {pending.session_id} was deleted while "
                    "it streamed; the reply is dropped (this error's .reply holds it)",
                    reply=pending,
                ) from exc
            self.pending.append(pending)
            raise UnsavedReplyError(
                f"the reply was streamed but could not be saved ({exc}); it is kept in plugin.pending and "
                "written before the next turn, by plugin.flush(), or when the agent is closed",
                reply=pending,
            ) from exc

    async def _session_gone(self, p: PendingReply, exc: PersistenceError) -> bool:
        """Did ``exc`` happen because ``p``'s session no longer exists? Then ``p`` can never be written.
        Marks ``p``. False when that cannot be told (the database is unreachable, say)."""
        if not isinstance(exc, NotFoundError | ConflictError):  # missing session, or a missing row it names
            return False
        try:
            gone = await self._rows.get_session(p.tenant_id, p.session_id) is None
        except PersistenceError:
            return False
        p.session_deleted = gone
        return gone

    async def _write(self, p: PendingReply) -> None:
        store = self._rows
        if p.uncertain:
            # a write that failed on the way back may have committed: update rather than collide
            if await store.get_api_call(p.tenant_id, p.call.id) is not None:
                return  # the whole final transaction landed
            if p.message is not None and not p.update_existing:
                p.update_existing = await store.get_message(p.tenant_id, p.message.id) is not None
        async with store.transaction() as tx:
            if p.message is not None:
                if p.update_existing and p.replace_existing:
                    await store.delete_message(p.tenant_id, p.message.id, tx=tx)
                    await store.save_message(p.message, tx=tx)
                elif p.update_existing:
                    await store.update_message(
                        p.tenant_id, p.message.id, content=p.message.content, status=p.message.status,
                        delta_ends=UNSET if p.message.delta_ends is None else p.message.delta_ends, tx=tx,
                    )
                    await store.update_session(p.tenant_id, p.session_id, tx=tx)  # touch update_time
                else:
                    await store.save_message(p.message, tx=tx)
            await store.save_api_call(p.call, tx=tx)

    async def flush(self, *, within: float | None = None) -> int:
        """Write replies kept in memory after a failed write, oldest first; returns how many were written.

        A reply whose session has been deleted since is dropped with a warning (it was handed back when
        its write first failed). Any other failure is raised and leaves that reply and the later ones in
        ``pending``. With ``within`` (seconds) the flush ends by then, and an unavailable database is retried
        until the time is up (a pool that is reconnecting gets the chance to), then the last error is raised."""
        start = self._written
        if within is None:
            await self._flush()
            return self._written - start
        _check_timeout(within, "within")
        last: PersistenceError | None = None
        try:
            async with asyncio.timeout(within):
                while True:
                    try:
                        await self._flush()
                        return self._written - start
                    except DatabaseUnavailableError as exc:
                        last = exc
                    await asyncio.sleep(_RETRY_PAUSE)
        except TimeoutError:
            # no try finished in time: the error that put the reply in pending says what is wrong
            reason = str(last) if last is not None else (self.pending[0].errors[-1:] or [""])[0]
            detail = f"; last error: {reason}" if reason else ""
            raise DatabaseUnavailableError(
                f"the pending replies could not be written within {within:g}s{detail}"
            ) from None

    async def _flush(self) -> None:
        async with self._flushing:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self.pending:
            p = self.pending[0]
            try:
                await self._write(p)
            except PersistenceError as exc:
                if not await self._session_gone(p, exc):
                    raise
                self.pending.pop(0)
                log.warning("%s: dropped unsaved %s: the session was deleted", self.plugin_id, p.describe())
                continue
            self.pending.pop(0)
            self._written += 1


#: the question a compaction answers, as the window sends it before the summary
COMPACTION_ASK = "Summarise our conversation so far."


async def _load_window(
    store: WindowReader, tenant_id: uuid.UUID, session_id: uuid.UUID, window: int | None, *,
    keep_last_open: bool = False,
) -> list[ChatMessage]:
    """Read only what the window can use: the last few rounds through the (session_id, seq) index. A tool
    call in it with no result is answered: by a recorded ``interrupted`` result when its process is gone,
    else (a live turn may still be running it, or the write failed) in memory only, with a warning.
    ``keep_last_open``: the calls of the session's last message (a reply whose calls its client runs) are
    answered in memory only, and never recorded: the client's results may still come."""
    if window == 0:
        return []
    if window is None:
        rows = await store.get_session_messages(tenant_id, session_id)
    else:
        k = 2 * window + 2
        while True:
            rows = await store.get_last_messages(tenant_id, session_id, k)
            rounds = sum(1 for r in rows[1:] if r.role == "user")  # rows[0] may be a cut round's middle
            if len(rows) < k or rounds >= window + 1:
                break
            k *= 2
    # The last compaction stands for every row before it (POST /v1/responses/compact), which are not sent. It
    # goes first as a round of its own, the summary as the model's answer to being asked for it: a system
    # message after the first would be dropped by the window and refused by many chat templates
    summary: list[ChatMessage] = []
    cut = max((i for i, r in enumerate(rows) if r.compaction), default=None)
    if cut is not None:
        summary = [ChatMessage(role="user", content=COMPACTION_ASK),
                   ChatMessage(role="assistant", content=rows[cut].content, id=rows[cut].id)]
        rows = rows[cut + 1 :]
    # A tool row stored before migration 0009 names no call: it answers nothing that can be sent (a result
    # must follow the call it names), so it is left out, as the window leaves out any orphan result.
    history = [chat_message(r) for r in rows if not (r.role == "tool" and r.tool_call_id is None)]
    # a round cut by the limit is not whole: drop it (a round opens with its system rows, then its user row)
    while history and history[0].role not in ("user", "system"):
        history.pop(0)
    settled, missing = settle_tool_messages(history)
    if not missing:  # nearly always: one read, nothing more
        return [*summary, *settled]
    if keep_last_open and rows and set(missing) <= {c.id for c in rows[-1].tool_calls}:
        return [*summary, *settled]
    try:
        recorded = await store.answer_interrupted_tool_calls(tenant_id, session_id)
    except PersistenceError as exc:
        recorded = []
        log.warning("session %s: recording the interrupted tool call(s) %s failed: %s",
                    session_id, ", ".join(missing), exc)  # fmt: skip
    # the recorded answers take the place of the in-memory ones (settling puts them after their calls)
    settled, missing = settle_tool_messages([*history, *(chat_message(r) for r in recorded)])
    if missing:
        log.warning("session %s: tool call(s) %s have no result; they are sent as interrupted (not recorded: "
                    "their turn may still be running)", session_id, ", ".join(missing))
    return [*summary, *settled]


def _recorded(settings: SessionSettings | None) -> dict[str, Any] | None:
    return None if settings is None else settings.model_dump(exclude_unset=True)


def _reply_message(
    turn: Turn, p: _Progress, text: str, status: MessageStatus, offsets: list[int] | None = None,
    tool_calls: Sequence[ToolCall] = (),
) -> Message:
    return Message(
        id=p.reply_id,
        session_id=turn.session_id,
        tenant_id=turn.tenant_id,
        user_id=turn.user_id,
        agent_id=turn.agent_id,
        role="assistant",
        content=text,
        status=status,
        parent_message_id=p.user_message_id,
        delta_ends=p.offsets() if offsets is None else offsets,
        tool_calls=stored_tool_calls(tool_calls),
    )


def _check_timeout(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
