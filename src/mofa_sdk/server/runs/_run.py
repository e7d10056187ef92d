"""A run: one chat turn owned by the service, not by the request that started it.

A run is an asyncio task holding one ``LLMAgent`` turn with its ``PersistencePlugin``; HTTP responses only
follow it. Its id is the id of the reply row it writes (a handler that runs before the plugin names the
reply), so any process can find what it saved. While it lives, its deltas are kept here (they are the reply
being written anyway); the database has them once it is checkpointed or done.

The log is ``parts``: event ``n`` is ``parts[n-1]``, a text delta's text, or ``""`` for a tool-call event
kept in ``tools`` by its number (a text delta is never empty). Text-only runs so pay nothing for tools,
and the reply's text is ``"".join(parts)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from ...ids import uuid7
from ...llm import EventHandler, ToolCall, Turn
from ._events import RunEvent, TerminalEvent, TextDeltaEvent, ToolEvent, renumber

__all__ = ["Principal", "Run", "RunHooks"]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: from its API key."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    key_id: uuid.UUID


class Run:
    """One turn and its event log while it lives in this process."""

    def __init__(self, principal: Principal, session_id: uuid.UUID) -> None:
        self.id = uuid7()
        self.tenant_id = principal.tenant_id
        self.user_id = principal.user_id
        self.session_id = session_id
        self.user_message_id: uuid.UUID | None = None
        #: the log: a text delta's text, or "" where a tool event (in ``tools``) is
        self.parts: list[str] = []
        #: the tool-call events of the log, by number
        self.tools: dict[int, ToolEvent] = {}
        #: the calls the reply makes (the client runs them), once the run ended
        self.tool_calls: tuple[ToolCall, ...] = ()
        self.terminal: TerminalEvent | None = None
        #: True once a follower on another process asked for this run's events
        self.watched = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self.cancel_requested = False
        #: the provider's finish reason ("stop", "length" …) once the run ended
        self.finish_reason: str | None = None
        #: the model that answered, once the run ended (what its api-call row records)
        self.model: str | None = None
        #: the API request that started the run, as saved with its user message (the Responses view's)
        self.request_params: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Run {self.id} session={self.session_id} {self.status} events={len(self.parts)}>"

    @property
    def status(self) -> str:
        return "streaming" if self.terminal is None else self.terminal.status

    def owned_by(self, principal: Principal) -> bool:
        return self.tenant_id == principal.tenant_id and self.user_id == principal.user_id

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add_tool_event(self, event: ToolEvent) -> ToolEvent:
        """Append a tool event to the log; returns it numbered."""
        self.parts.append("")
        numbered = renumber(event, len(self.parts))
        self.tools[numbered.n] = numbered
        return numbered

    def events_after(self, after: int) -> list[RunEvent]:
        tools = self.tools
        out: list[RunEvent] = [
            (TextDeltaEvent(i + 1, t) if t else tools[i + 1]) for i, t in enumerate(self.parts[after:], start=after)
        ]
        if self.terminal is not None and after < self.terminal.n:
            out.append(self.terminal)
        return out

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_change(self, seconds: float) -> None:
        """Until the log grows or the run ends, at most ``seconds``."""
        if self.terminal is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), seconds)

    async def wait_finished(self, seconds: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), seconds)
        return self._finished.is_set()

    def cancel(self) -> None:
        """The explicit stop: the turn is cancelled and its reply saved as ``cancelled``."""
        if self.terminal is None and self.task is not None and not self.cancel_requested:
            self.cancel_requested = True
            self.task.cancel()


class RunHooks(EventHandler):
    """Runs after the persistence plugin: once the user message is saved the provider is about to be
    called, and the run has started."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def before_call(self, turn: Turn) -> None:
        self.run.user_message_id = turn.user_message_id
        if not self.run.started.done():
            self.run.started.set_result(None)
