"""Manual persistence: the caller decides what is saved and when, optionally inside its own transaction."""

from __future__ import annotations

import uuid
from typing import Any

from ..entities import LLMApiCall, Message, MessageStatus, QueryFilter, Session, UsageStatistics
from ..errors import TenantMismatchError
from ..ids import parse_uuid
from ._store import Store

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
        sid = parse_uuid(session_id, "session_id")
        existing = await store.get_session(tid, sid)
        if existing is None:
            await store.create_session(Session(id=sid, tenant_id=tid, user_id=uid, agent_id=aid))
        elif existing.user_id != uid:
            raise TenantMismatchError(f"session {sid} belongs to another user")
        return cls(store, uid, tid, aid, sid)

    async def new_session(self, *, title: str | None = None) -> uuid.UUID:
        """Start a new session and make it this context's session."""
        session = await self.store.create_session(
            Session(tenant_id=self.tenant_id, user_id=self.user_id, agent_id=self.agent_id, title=title)
        )
        self.session_id = session.id
        self.last_user_message_id = None
        return session.id

    async def save_user_message(
        self, text: str, *, metadata: dict[str, Any] | None = None, tx: Any = None
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
        tx: Any = None,
    ) -> uuid.UUID:
        """``parent_message_id`` defaults to the last user message saved through this context."""
        return await self._save(
            "assistant", text, status, metadata, parent_message_id or self.last_user_message_id, tx
        )

    async def _save(
        self,
        role: str,
        text: str,
        status: MessageStatus,
        metadata: dict[str, Any] | None,
        parent: uuid.UUID | None,
        tx: Any,
    ) -> uuid.UUID:
        message = Message(
            session_id=self.session_id,
            tenant_id=self.tenant_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            role=role,  # type: ignore[arg-type]
            content=text,
            status=status,
            metadata=metadata or {},
            parent_message_id=parent,
        )
        return (await self.store.save_message(message, tx=tx)).id

    async def save_api_call(
        self, *, model_name: str, stream: Any = None, tx: Any = None, **fields: Any
    ) -> uuid.UUID:
        """Record an LLM call. Pass a finished ``ChatStream`` as ``stream=`` to take its usage and timings;
        any :class:`LLMApiCall` field can be given (or overridden) by keyword."""
        values: dict[str, Any] = {"status": "success", "request_message_id": self.last_user_message_id}
        if stream is not None:
            usage = stream.usage
            values.update(
                status={"complete": "success", "cancelled": "cancelled"}.get(stream.status, "failed"),
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                tokens_estimated=usage.estimated,
                latency_ms=stream.latency_ms,
                time_to_first_token_ms=stream.time_to_first_token_ms,
                tokens_per_second=stream.tokens_per_second,
                provider_response_id=stream.response_id,
            )
        values.update(fields)
        call = LLMApiCall(
            tenant_id=self.tenant_id,
            session_id=self.session_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            model_name=model_name,
            **values,
        )
        return (await self.store.save_api_call(call, tx=tx)).id

    async def get_history(self, *, limit: int | None = None) -> list[Message]:
        """The session's messages by seq; with ``limit``, only the last ``limit``."""
        if limit is None:
            return await self.store.get_session_messages(self.tenant_id, self.session_id)
        return await self.store.get_last_messages(self.tenant_id, self.session_id, limit)

    async def get_usage_stats(self) -> UsageStatistics:
        return await self.store.get_statistics(
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
