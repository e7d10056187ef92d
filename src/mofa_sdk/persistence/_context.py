"""Manual persistence: the caller decides what is saved and when, optionally inside its own transaction."""

from __future__ import annotations

import uuid
from typing import Any

from ..entities import LLMApiCall, Message, MessageRole, MessageStatus, QueryFilter, Session, UsageStatistics
from ..ids import parse_uuid
from ._calls import TurnOutcome, call_fields
from ._protocols import ContextStore
from ._sessions import open_session
from ._store import Store, Transaction

__all__ = ["PersistenceContext"]


class PersistenceContext:
    """One user's conversation in one session. Create with :meth:`new` or :meth:`from_session`.

    Every ``save_*`` takes ``tx=`` (from ``store.transaction()``, or the driver's connection inside the
    caller's own transaction) and then commits or rolls back with it.
    """

    def __init__(
        self,
        store: Store,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
        session_id: uuid.UUID,
    ) -> None:
        self.store = store
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.session_id = session_id
        self.last_user_message_id: uuid.UUID | None = None

    def __repr__(self) -> str:
        return f"PersistenceContext(session={self.session_id}, tenant={self.tenant_id}, user={self.user_id})"

    @property
    def _rows(self) -> ContextStore:
        """The store, as far as this context uses it."""
        return self.store

    @classmethod
    async def new(
        cls,
        store: Store,
        user_id: uuid.UUID | str,
        tenant_id: uuid.UUID | str,
        agent_id: uuid.UUID | str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> PersistenceContext:
        """A context on a new session."""
        uid, tid, aid = _ids(user_id, tenant_id, agent_id)
        session = await store.create_session(
            Session(tenant_id=tid, user_id=uid, agent_id=aid, title=title, metadata=metadata or {})
        )
        return cls(store, uid, tid, aid, session.id)

    @classmethod
    async def from_session(
        cls,
        store: Store,
        user_id: uuid.UUID | str,
        tenant_id: uuid.UUID | str,
        agent_id: uuid.UUID | str,
        session_id: uuid.UUID | str,
    ) -> PersistenceContext:
        """A context on an existing session (created with that id when unknown). A session of another
        tenant or user raises TenantMismatchError and nothing is written."""
        uid, tid, aid = _ids(user_id, tenant_id, agent_id)
        session, _ = await open_session(store, tid, uid, aid, parse_uuid(session_id, "session_id"))
        return cls(store, uid, tid, aid, session.id)

    async def new_session(self, *, title: str | None = None) -> uuid.UUID:
        """Start a new session and make it this context's session."""
        session = await self._rows.create_session(
            Session(tenant_id=self.tenant_id, user_id=self.user_id, agent_id=self.agent_id, title=title)
        )
        self.session_id = session.id
        self.last_user_message_id = None
        return session.id

    async def save_user_message(
        self, text: str, *, metadata: dict[str, Any] | None = None, tx: Transaction | None = None
    ) -> uuid.UUID:
        saved = await self._save("user", text, "complete", metadata, None, tx)
        self.last_user_message_id = saved
        return saved

    async def save_assistant_message(
        self,
        text: str,
        *,
        metadata: dict[str, Any] | None = None,
        status: MessageStatus = "complete",
        parent_message_id: uuid.UUID | None = None,
        tx: Transaction | None = None,
    ) -> uuid.UUID:
        """``parent_message_id`` defaults to the last user message saved through this context."""
        return await self._save(
            "assistant", text, status, metadata, parent_message_id or self.last_user_message_id, tx
        )

    async def _save(
        self,
        role: MessageRole,
        text: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None,
        parent: uuid.UUID | None,
        tx: Transaction | None,
    ) -> uuid.UUID:
        message = Message(
            session_id=self.session_id,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            role=role,
            content=text,
            status=status,
            metadata=metadata or {},
            parent_message_id=parent,
        )
        return (await self._rows.save_message(message, tx=tx)).id

    async def save_api_call(
        self, *, model_name: str, stream: TurnOutcome | None = None, tx: Transaction | None = None, **fields: Any
    ) -> uuid.UUID:
        """Record an LLM call. Pass a finished ``ChatStream`` as ``stream=`` to take its status, error,
        notes, usage and timings, mapped as the automatic plugin maps them; any :class:`LLMApiCall` field can
        be given (or overridden) by keyword."""
        values: dict[str, Any] = {"status": "success", "request_message_id": self.last_user_message_id}
        if stream is not None:
            values.update(call_fields(stream))
        values.update(fields)
        call = LLMApiCall(
            tenant_id=self.tenant_id,
            session_id=self.session_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            model_name=model_name,
            **values,
        )
        return (await self._rows.save_api_call(call, tx=tx)).id

    async def get_history(self, *, limit: int | None = None) -> list[Message]:
        """The session's messages by seq; with ``limit``, only the last ``limit``."""
        if limit is None:
            return await self._rows.get_session_messages(self.tenant_id, self.session_id)
        return await self._rows.get_last_messages(self.tenant_id, self.session_id, limit)

    async def get_usage_stats(self) -> UsageStatistics:
        return await self._rows.get_statistics(
            QueryFilter(tenant_id=self.tenant_id, session_id=self.session_id)
        )


def _ids(
    user_id: uuid.UUID | str, tenant_id: uuid.UUID | str, agent_id: uuid.UUID | str
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    return (
        parse_uuid(user_id, "user_id"),
        parse_uuid(tenant_id, "tenant_id"),
        parse_uuid(agent_id, "agent_id"),
    )
