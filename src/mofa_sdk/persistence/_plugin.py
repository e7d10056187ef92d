"""Automatic persistence: the bridge between an agent's turn hooks and a store.

What is written when (DESIGN §3):

- ``before_call``: the user message, before the provider is called;
- while streaming: a checkpoint of the partial reply at most every ``checkpoint_interval`` seconds (the first
  inserts the assistant row as ``streaming``, later ones update it), so a crash loses at most one interval;
- when the turn ends (complete, error or cancelled): the assistant reply with its final status and the
  api-call record, in one transaction.

If a finishing write fails, the reply is kept in memory (``pending``), retried before the next write, and
an :class:`UnsavedReplyError` carrying it is raised to the consumer after the stream.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..entities import LLMApiCall, Message, Session
from ..errors import ConfigError, PersistenceError, TenantMismatchError, UnsavedReplyError
from ..ids import parse_uuid, uuid7
from ..llm import ChatMessage, EventHandler, Turn, TurnResult
from ._store import UNSET, Store

__all__ = ["PendingReply", "PersistencePlugin"]

log = logging.getLogger("mofa_sdk.persistence")

_STATUS = {"complete": "complete", "cancelled": "cancelled", "error": "error"}


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
        store_factory: Callable[[], Awaitable[Store]] | None = None,
        owns_store: bool = False,
        record_delta_offsets: bool = False,
    ) -> None:
        if store is None and store_factory is None:
            raise ConfigError("PersistencePlugin needs a store")
        if not checkpoint_interval > 0:
            raise ConfigError(f"checkpoint_interval must be > 0 seconds, got {checkpoint_interval!r}")
        self.plugin_id = plugin_id
        self._store = store
        self._store_factory = store_factory
        self._owns_store = owns_store
        self.user_id = _optional_uuid(user_id, "user_id")
        self.tenant_id = _optional_uuid(tenant_id, "tenant_id")
        self.agent_id = _optional_uuid(agent_id, "agent_id")
        self.session_id = _optional_uuid(session_id, "session_id")
        self.checkpoint_interval = checkpoint_interval
        #: also store where each delta ends (``metadata["delta_ends"]``, cumulative character offsets) and
        #: checkpoint at the first delta, so that a reader of the database can rebuild the stream event by
        #: event (``mofa serve`` resumes runs from it)
        self.record_delta_offsets = record_delta_offsets
        self.pending: list[PendingReply] = []

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
        )

    def __repr__(self) -> str:
        return f"PersistencePlugin({self.plugin_id!r}, store={type(self._store).__name__}, session={self.session_id})"

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ConfigError("the plugin's store is not connected yet: build the agent with build_async()")
        return self._store

    async def connect(self) -> Store:
        if self._store is None:
            assert self._store_factory is not None
            self._store = await self._store_factory()
        return self._store

    async def close(self) -> None:
        if self._owns_store and self._store is not None:
            await self._store.close()
            self._store = None

    # -- sessions (SessionBackend) ---------------------------------------------------------------------
    async def open_session(
        self,
        session_id: uuid.UUID | None,
        *,
        window: int | None,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> tuple[uuid.UUID, list[ChatMessage]]:
        store = await self.connect()
        if session_id is None:
            created = await store.create_session(
                Session(tenant_id=tenant_id, user_id=user_id, agent_id=agent_id)
            )
            return created.id, []
        existing = await store.get_session(tenant_id, session_id)
        if existing is None:
            # create_session refuses (TenantMismatchError, nothing written) an id another tenant or user owns
            await store.create_session(
                Session(id=session_id, tenant_id=tenant_id, user_id=user_id, agent_id=agent_id)
            )
            return session_id, []
        if existing.user_id != user_id:
            raise TenantMismatchError(f"session {session_id} belongs to another user; nothing was loaded")
        await store.mark_interrupted(tenant_id, session_id)
        return session_id, await self._load_window(store, tenant_id, session_id, window)

    async def _load_window(
        self, store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID, window: int | None
    ) -> list[ChatMessage]:
        """Read only what the window can use: the last few rounds through the (session_id, seq) index."""
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
        history = [
            ChatMessage(role=r.role, content=r.content, status=r.status, id=r.id)
            for r in rows
            if r.role != "system"
        ]
        while history and history[0].role != "user":  # a round cut by the limit is not whole: drop it
            history.pop(0)
        return history

    async def list_sessions(self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 50) -> list[Any]:
        store = await self.connect()
        return list(await store.get_user_sessions(tenant_id, user_id, limit=limit))

    # -- turn hooks ----------------------------------------------------------------------------------
    async def before_call(self, turn: Turn) -> None:
        await self.flush()
        saved = await self.store.save_message(
            Message(
                session_id=turn.session_id,
                tenant_id=turn.tenant_id,
                user_id=turn.user_id,
                agent_id=turn.agent_id,
                role="user",
                content=turn.user_text,
            )
        )
        turn.state["user_message_id"] = saved.id
        # a handler that ran first may have named the reply (``mofa serve`` names a run after it)
        turn.state.setdefault("assistant_message_id", uuid7())
        if self.record_delta_offsets:
            turn.state["delta_ends"] = []
        turn.state["checkpointed"] = False
        turn.state["last_checkpoint"] = time.monotonic()

    async def on_delta(self, turn: Turn, delta: str) -> None:
        first = False
        if self.record_delta_offsets:
            ends = turn.state["delta_ends"]
            ends.append((ends[-1] if ends else 0) + len(delta))
            first = not turn.state["checkpointed"]
        now = time.monotonic()
        if now - turn.state["last_checkpoint"] < self.checkpoint_interval and not first:
            return
        turn.state["last_checkpoint"] = now
        if turn.state.get("checkpoint_failed"):
            return
        try:
            await self._checkpoint(turn)
        except PersistenceError as exc:
            # A checkpoint is insurance against a crash; losing the database must not cut the reply the
            # user is reading. Stop checkpointing this turn; the final write (or `pending`) carries it.
            turn.state["checkpoint_failed"] = True
            log.warning("checkpoint of reply %s failed; the reply keeps streaming: %s",
                        turn.state["assistant_message_id"], exc)

    async def _checkpoint(self, turn: Turn) -> None:
        if turn.state["checkpointed"]:
            await self.store.update_message(
                turn.tenant_id, turn.state["assistant_message_id"], content=turn.text,
                metadata=self._offsets(turn) or UNSET,
            )
            return
        await self.store.save_message(self._reply_message(turn, turn.text, "streaming"))
        turn.state["checkpointed"] = True

    def _reply_message(self, turn: Turn, text: str, status: str) -> Message:
        return Message(
            id=turn.state["assistant_message_id"],
            session_id=turn.session_id,
            tenant_id=turn.tenant_id,
            user_id=turn.user_id,
            agent_id=turn.agent_id,
            role="assistant",
            content=text,
            status=status,  # type: ignore[arg-type]
            parent_message_id=turn.state["user_message_id"],
            metadata=self._offsets(turn),
        )

    def _offsets(self, turn: Turn) -> dict[str, Any]:
        return {"delta_ends": list(turn.state["delta_ends"])} if self.record_delta_offsets else {}

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        await self._finish(turn, result)

    async def _finish(self, turn: Turn, result: TurnResult) -> None:
        if "user_message_id" not in turn.state:  # before_call never ran for this plugin
            return
        status = _STATUS.get(result.status, "error")
        checkpointed = bool(turn.state["checkpointed"])
        message = self._reply_message(turn, result.text, status) if (result.text or checkpointed) else None
        err = result.error
        usage = result.usage
        call = LLMApiCall(
            tenant_id=turn.tenant_id,
            session_id=turn.session_id,
            user_id=turn.user_id,
            agent_id=turn.agent_id,
            request_message_id=turn.state["user_message_id"],
            response_message_id=message.id if message else None,
            model_name=result.model or turn.model,
            status=(
                "success"
                if status == "complete"
                else "cancelled"
                if status == "cancelled"
                else getattr(err, "call_status", "failed")
            ),
            error_message=str(err)
            if err is not None
            else ("cancelled by the consumer" if status == "cancelled" else None),
            error_code=getattr(err, "code", type(err).__name__) if err is not None else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=usage.prompt_tokens_details,
            completion_tokens_details=usage.completion_tokens_details,
            tokens_estimated=usage.estimated,
            latency_ms=max(0, result.latency_ms),
            time_to_first_token_ms=result.time_to_first_token_ms,
            tokens_per_second=result.tokens_per_second,
            provider_response_id=result.response_id,
        )
        pending = PendingReply(turn.tenant_id, turn.session_id, message, checkpointed, call,
                               uncertain=bool(turn.state.get("checkpoint_failed")))
        try:
            await self._write(pending)
        except PersistenceError as exc:
            pending.errors.append(str(exc))
            pending.uncertain = True
            self.pending.append(pending)
            raise UnsavedReplyError(
                f"the reply was streamed but could not be saved ({exc}); it is kept in memory and will be "
                "written before the next turn, or call plugin.flush()",
                reply=pending,
            ) from exc

    async def _write(self, p: PendingReply) -> None:
        store = self.store
        if p.uncertain:
            # a write that failed on the way back may have committed: update rather than collide
            if await store.get_api_call(p.tenant_id, p.call.id) is not None:
                return  # the whole final transaction landed
            if p.message is not None and not p.update_existing:
                p.update_existing = await store.get_message(p.tenant_id, p.message.id) is not None
        async with store.transaction() as tx:
            if p.message is not None:
                if p.update_existing:
                    await store.update_message(
                        p.tenant_id, p.message.id, content=p.message.content, status=p.message.status,
                        metadata=p.message.metadata or UNSET, tx=tx,
                    )
                    await store.update_session(p.tenant_id, p.session_id, tx=tx)  # touch update_time
                else:
                    await store.save_message(p.message, tx=tx)
            await store.save_api_call(p.call, tx=tx)

    async def flush(self) -> int:
        """Write replies kept in memory after a failed write; returns how many were written."""
        written = 0
        while self.pending:
            await self._write(self.pending[0])
            self.pending.pop(0)
            written += 1
        return written
