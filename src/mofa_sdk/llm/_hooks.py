"""What an agent tells its plugins and event handlers, and what a persistence plugin provides.

The agent never sees SQL and stores never see deltas: a :class:`SessionBackend` (the persistence plugin)
is the only bridge. Hook failures are not swallowed: an exception from ``before_call`` aborts the turn
before the provider is called; one from a finishing hook is raised to the consumer after the stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..entities import SessionSettings
from ._loop import ToolStep
from ._types import ChatMessage, Turn, TurnResult

__all__ = ["EventHandler", "OpenedSession", "SessionBackend", "SessionInfo", "SettingsBackend", "Settle"]

#: what a session runs with, given what it recorded (None: nothing, or a new session)
Settle = Callable[[SessionSettings | None], SessionSettings]


class EventHandler:
    """Override what you need; every hook is a no-op by default."""

    async def before_call(self, turn: Turn) -> None:
        """Before the provider is called. Raise (e.g. ``VetoedError``) to refuse the call."""

    async def on_delta(self, turn: Turn, delta: str) -> None:
        """After each text delta; ``turn.text`` is the reply so far. Keep it cheap: it is on the token path."""

    async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
        """A model call ended in tool calls (``step.message``); none of them runs before this returns. Raise
        to end the turn as an error with no tool run (the calls then get error results)."""

    async def on_tool_result(self, turn: Turn, message: ChatMessage) -> None:
        """One call was answered: ``message`` is the ``tool`` message (with its id), handed on as it arrives.
        The results of a call that was cancelled or never ran come here too (``is_error``, status
        ``cancelled`` or ``error``), when the turn ends."""

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        """The reply finished cleanly (``result.status == "complete"``)."""

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        """The provider failed; ``result.error`` says why and ``result.text`` is the partial reply."""

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        """The consumer stopped early or the task was cancelled; ``result.text`` is the partial reply."""


class SessionInfo(Protocol):
    """A session as ``list_sessions`` gives it (a stored ``Session`` row is one)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def tenant_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...
    @property
    def agent_id(self) -> uuid.UUID | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def update_time(self) -> datetime: ...


@runtime_checkable
class SessionBackend(Protocol):
    """What the persistence plugin adds to an agent beyond the event hooks."""

    async def open_session(
        self,
        session_id: uuid.UUID | None,
        *,
        window: int | None,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> tuple[uuid.UUID, list[ChatMessage]]:
        """Load (or create) a session; return its id and the history the window needs, oldest first.
        Raises TenantMismatchError for a session of another tenant or user, with nothing written."""
        ...

    async def list_sessions(
        self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 50
    ) -> list[SessionInfo]:
        """The user's sessions, most recently active first."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A session as a :class:`SettingsBackend` opened it."""

    id: uuid.UUID
    #: what the settled window needs, oldest first
    history: list[ChatMessage]
    #: what the session runs with now (recorded on it)
    settings: SessionSettings
    created: bool


@runtime_checkable
class SettingsBackend(SessionBackend, Protocol):
    """A session backend that records how each session is answered (``PersistencePlugin`` is one)."""

    async def open_with_settings(
        self,
        session_id: uuid.UUID | None,
        *,
        settle: Settle,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> OpenedSession:
        """Load (or create) a session; ``settle`` turns what it recorded into what it runs with, which is
        recorded (with the changes) in one write when it differs, and whose window is read. Raises
        TenantMismatchError for a session of another tenant or user, with nothing written."""
        ...
