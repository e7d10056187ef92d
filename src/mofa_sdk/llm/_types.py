"""Plain data shared by providers, the window, the agent and plugins. No I/O here."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._vocab import MessageRole, MessageStatus
from ..errors import ValidationError
from ._messages import ContentPart, FilePart, ImagePart, TextPart, ToolCall, ToolResult

__all__ = ["ChatMessage", "StreamLimits", "Turn", "TurnResult", "Usage"]

#: the stored rows' vocabulary (``mofa_sdk._vocab``), under the names the llm layer has always used
Role = MessageRole
ReplyStatus = MessageStatus


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation as the model sees it.

    Beside its text a message may carry: ``tool_calls`` (an assistant's calls; its text may then be empty);
    ``tool_call_id`` and ``is_error`` (a ``tool`` message: ``content`` is the result the call gets, see
    :attr:`tool_result` and :meth:`for_tool_result`); ``parts`` (a user message with non-text input: the
    ordered text and image parts, whose text joined by newlines is ``content`` — pass ``content=""`` to have
    it derived). Sequences are stored as tuples. Bad combinations raise :class:`ValidationError`.
    """

    role: Role
    content: str
    #: a partial reply (cancelled, error, interrupted) is still part of what the user saw
    status: ReplyStatus = "complete"
    #: the stored message's id, when it came from or went to a database
    id: uuid.UUID | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    parts: tuple[ContentPart, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.content, str):
            raise ValidationError(f"the content of a {self.role} message must be a str, got "
                                  f"{type(self.content).__name__}")
        if self.tool_calls or self.parts or self.tool_call_id is not None or self.is_error or self.role == "tool":
            self._check_extras()  # text-only messages (nearly all of them) pay for nothing more

    def _check_extras(self) -> None:
        role = self.role
        calls = self._tuple(self.tool_calls, "tool_calls", ToolCall)
        if calls:
            if role != "assistant":
                raise ValidationError(f"only an assistant message makes tool calls, not a {role} message")
            ids = [call.id for call in calls]
            if len(set(ids)) != len(ids):
                raise ValidationError(f"an assistant message's tool call ids must differ, got {ids}")
            object.__setattr__(self, "tool_calls", calls)
        if role == "tool":
            if self.tool_call_id is None:
                raise ValidationError("a tool message needs the tool_call_id of the call it answers")
            ToolResult(self.tool_call_id, self.content, self.is_error)  # the same checks as a result's
        elif self.tool_call_id is not None or self.is_error:
            raise ValidationError(f"tool_call_id and is_error belong to a tool message, not a {role} message")
        parts = self._tuple(self.parts, "parts", TextPart, ImagePart, FilePart)
        if parts:
            if role != "user":
                raise ValidationError(f"only a user message has input parts, not a {role} message")
            text = "\n".join(p.text for p in parts if isinstance(p, TextPart))
            if not self.content:
                object.__setattr__(self, "content", text)
            elif self.content != text:
                raise ValidationError("a user message with parts: content must be the text of its text parts "
                                      "joined by newlines (pass content='' to have it derived)")
            object.__setattr__(self, "parts", parts)

    def _tuple(self, value: object, name: str, *kinds: type) -> tuple[Any, ...]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValidationError(f"ChatMessage.{name} must be a sequence, got {type(value).__name__}")
        for item in value:
            if not isinstance(item, kinds):
                wanted = " or ".join(k.__name__ for k in kinds)
                raise ValidationError(f"ChatMessage.{name} holds a {type(item).__name__}, not a {wanted}")
        return tuple(value)

    @classmethod
    def for_tool_result(cls, result: ToolResult, *, status: ReplyStatus = "complete",
                        id: uuid.UUID | None = None) -> ChatMessage:
        """The ``tool`` message that gives ``result`` to the model."""
        return cls("tool", result.content, status, id, tool_call_id=result.tool_call_id, is_error=result.is_error)

    @property
    def tool_result(self) -> ToolResult | None:
        """The result a ``tool`` message carries, None for other roles."""
        if self.role != "tool" or self.tool_call_id is None:
            return None
        return ToolResult(self.tool_call_id, self.content, self.is_error)


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
    #: which model call of the turn is streaming: 0, then one more after each round of tool results
    step: int = 0
    _parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The reply so far."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def append(self, delta: str) -> None:
        self._parts.append(delta)

    def start_step(self) -> None:
        """A new model call of the turn begins (after tool results): ``text`` is that call's text."""
        self._parts.clear()
        self.step += 1


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
    #: the calls the final reply makes, when the turn returns them instead of running them (a turn given
    #: ``messages=``: its caller runs the tools); empty otherwise
    tool_calls: tuple[ToolCall, ...] = ()
    #: True when the turn ended while its tools ran (cancelled, a failed hook, the round limit): no model
    #: call was in progress, so there is no reply and no call record beyond those of its tool steps
    ended_in_tools: bool = False


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
