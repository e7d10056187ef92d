"""The parts of a store each caller uses, as narrow protocols: a reader sees what the plugin, the manual
context and the CLI depend on, and mypy checks that :class:`Store` provides it where a store is passed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ..entities import (
    Agent,
    LLMApiCall,
    Message,
    MessageStatus,
    QueryFilter,
    Session,
    SessionSettings,
    SettingsChange,
    UsageStatistics,
)
from ._store import UNSET, Transaction, Unset

__all__ = [
    "CallWriter",
    "ContextStore",
    "HistoryReader",
    "MessageWriter",
    "PluginStore",
    "SessionFinder",
    "SessionLister",
    "SessionOpener",
    "SessionReader",
    "WindowReader",
]


class SessionReader(Protocol):
    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None: ...


class SessionOpener(SessionReader, Protocol):
    async def create_session(self, session: Session, *, tx: Transaction | None = None) -> Session: ...


class SessionFinder(SessionReader, Protocol):
    """What ``mofa`` needs to resolve a session id as typed (whole, or its start or end)."""

    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]: ...


class SessionLister(Protocol):
    """What ``mofa`` needs to show sessions in a table (title, agent code, message count)."""

    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]: ...

    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int: ...

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]: ...


class HistoryReader(Protocol):
    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]: ...

    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]: ...


class WindowReader(HistoryReader, Protocol):
    """What loading a session's window uses: its rows, and the repair of tool calls a crash left open."""

    async def answer_interrupted_tool_calls(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]: ...


class MessageWriter(Protocol):
    async def save_message(self, message: Message, *, tx: Transaction | None = None) -> Message: ...


class CallWriter(Protocol):
    async def save_api_call(self, call: LLMApiCall, *, tx: Transaction | None = None) -> LLMApiCall: ...


class ContextStore(SessionOpener, HistoryReader, MessageWriter, CallWriter, Protocol):
    """What :class:`PersistenceContext` uses."""

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics: ...


class PluginStore(SessionOpener, WindowReader, MessageWriter, CallWriter, Protocol):
    """What :class:`PersistencePlugin` uses: it checkpoints and finishes replies, in one transaction."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def update_message(
        self,
        tenant_id: uuid.UUID,
        message_id: uuid.UUID,
        *,
        content: str | Unset = UNSET,
        status: MessageStatus | Unset = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        delta_ends: list[int] | Unset | None = UNSET,
        tx: Transaction | None = None,
    ) -> None: ...

    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None: ...

    async def delete_message(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool: ...

    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None: ...

    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int: ...

    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]: ...

    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Transaction | None = None,
    ) -> Session: ...

    async def record_session_settings(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        settings: SessionSettings,
        changes: Sequence[SettingsChange] = (),
        *,
        tx: Transaction | None = None,
    ) -> Session: ...

    async def close(self) -> None: ...
