"""Plain data shared by providers, the window, the agent and plugins. No I/O here."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .._vocab import MessageRole, MessageStatus

__all__ = ["ChatMessage", "StreamLimits", "Turn", "TurnResult", "Usage"]

#: the stored rows' vocabulary (``mofa_sdk._vocab``), under the names the llm layer has always used
Role = MessageRole
ReplyStatus = MessageStatus


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation as the model sees it."""

    role: Role
    content: str
    #: a partial reply (cancelled, error, interrupted) is still part of what the user saw
    status: ReplyStatus = "complete"
    #: the stored message's id, when it came from or went to a database
    id: uuid.UUID | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: True when counted locally because the provider reported nothing
    estimated: bool = False
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


@dataclass(slots=True)
class Turn:
    """One user message and the call that answers it, as plugins and event handlers see it."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    user_text: str
    model: str
    #: exactly what is sent to the provider: system prompt, the window, the new user message
    request: list[ChatMessage]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started: float = field(default_factory=time.monotonic)
    #: per-turn scratch space, each handler its own keys; nothing another layer reads
    state: dict[str, Any] = field(default_factory=dict)
    #: the stored user message, once a persistence plugin saved it (``before_call``)
    user_message_id: uuid.UUID | None = None
    #: the id the reply is stored under: a handler running before the persistence plugin may choose it
    #: (``mofa serve`` names the reply after its run), else the plugin does
    reply_id: uuid.UUID | None = None
    #: the id the call record (api-call row) is stored under, once a persistence plugin chose it
    api_call_id: uuid.UUID | None = None
    #: the API request that started this turn (``mofa serve`` sets it in a handler running before the
    #: persistence plugin): saved with the user message, in the same insert; opaque to the library
    request_params: dict[str, Any] | None = None
    _parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The reply so far."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def append(self, delta: str) -> None:
        self._parts.append(delta)


@dataclass(slots=True)
class TurnResult:
    """How a turn ended. Given to ``after_reply``, ``on_error`` and ``on_cancel`` alike."""

    text: str
    status: ReplyStatus
    usage: Usage
    model: str
    latency_ms: int
    time_to_first_token_ms: int | None = None
    tokens_per_second: float | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    #: the provider error (on_error) or None
    error: BaseException | None = None
    #: what the stream layer repaired or dropped at the provider boundary (surrogates, implausible usage)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds on one turn, so that a stream that never ends cannot hang it. None switches a bound off.

    ``idle_timeout``: seconds without reply text (keep-alive comments and empty deltas are not text; time
    the consumer spends on a delta is not counted). ``turn_timeout``: seconds for the whole turn, from the
    call to the last delta. ``max_reply_chars``: the reply's length cap, in characters.
    """

    idle_timeout: float | None = 60.0
    turn_timeout: float | None = 600.0
    max_reply_chars: int | None = 1_000_000
