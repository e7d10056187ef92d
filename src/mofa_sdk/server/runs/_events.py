"""The events of a run's log: numbered, frozen values, and the one place they become JSON.

A run's log is its events numbered from 1 (text deltas and, between them, the tool-call events: a call
started, its argument fragments, the call complete, and for a tool the server ran its result), then one
terminal event numbered after the last. Each kind is its own dataclass; a new kind is a new class here and a
new case in :func:`event_json`, never a new dict key read elsewhere. The native SSE API and the
NOTIFY bus both encode events through :func:`event_json` / :func:`event_of_json`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from ...entities import LLMApiCall

__all__ = [
    "DONE_STATUSES", "TOOL_KINDS", "ApiCallFacts", "RunError", "RunEvent", "TerminalEvent", "TextDeltaEvent",
    "ToolArgumentsEvent", "ToolCallDoneEvent", "ToolCallStartedEvent", "ToolEvent", "ToolResultEvent", "Usage",
    "event_json", "event_of_json", "renumber", "terminal_event",
]

#: statuses whose terminal event is ``done``; any other (error, interrupted) ends the log with ``error``
DONE_STATUSES = frozenset({"complete", "cancelled"})


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class RunError:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ApiCallFacts:
    """What the terminal event tells of the reply's api-call row."""

    id: uuid.UUID
    latency_ms: int | None
    time_to_first_token_ms: int | None


@dataclass(frozen=True, slots=True)
class TextDeltaEvent:
    n: int
    text: str

    kind: ClassVar[Literal["delta"]] = "delta"
    terminal: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ToolCallStartedEvent:
    """The model began tool call ``index`` (0-based within its model call): its id (None when the provider
    sends it later: :class:`ToolCallDoneEvent` has it) and the function's name."""

    n: int
    index: int
    call_id: str | None
    name: str

    kind: ClassVar[Literal["tool_call.started"]] = "tool_call.started"
    terminal: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ToolArgumentsEvent:
    """A fragment of call ``index``'s arguments (JSON text, in order)."""

    n: int
    index: int
    text: str

    kind: ClassVar[Literal["tool_call.arguments"]] = "tool_call.arguments"
    terminal: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ToolCallDoneEvent:
    """Call ``index`` is complete: its id, name and whole arguments, as saved on the reply."""

    n: int
    index: int
    call_id: str
    name: str
    arguments: str

    kind: ClassVar[Literal["tool_call.done"]] = "tool_call.done"
    terminal: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """A tool the server runs answered call ``call_id`` (saved as a ``tool`` row)."""

    n: int
    call_id: str
    content: str
    is_error: bool = False

    kind: ClassVar[Literal["tool_result"]] = "tool_result"
    terminal: ClassVar[bool] = False


ToolEvent = ToolCallStartedEvent | ToolArgumentsEvent | ToolCallDoneEvent | ToolResultEvent
#: the event kinds of :data:`ToolEvent`
TOOL_KINDS = frozenset({"tool_call.started", "tool_call.arguments", "tool_call.done", "tool_result"})


def renumber(event: ToolEvent, n: int) -> ToolEvent:
    """``event`` as event number ``n`` of a log."""
    return event if event.n == n else replace(event, n=n)


@dataclass(frozen=True, slots=True)
class TerminalEvent:
    """The end of a run: its status, the ids of its rows, its usage, and what failed (statuses other than
    complete and cancelled). ``saved_events``: how many deltas the saved reply holds, when a follower may
    have seen more than a dead owner checkpointed."""

    n: int
    status: str
    user_message_id: uuid.UUID | None
    assistant_message_id: uuid.UUID | None
    api_call: ApiCallFacts | None = None
    usage: Usage | None = None
    error: RunError | None = None
    saved_events: int | None = None

    terminal: ClassVar[bool] = True

    @property
    def kind(self) -> Literal["done", "error"]:
        return "done" if self.status in DONE_STATUSES else "error"


RunEvent = TextDeltaEvent | ToolEvent | TerminalEvent


def terminal_event(
    n: int,
    status: str,
    *,
    user_message_id: uuid.UUID | None,
    assistant_message_id: uuid.UUID | None,
    call: LLMApiCall | None = None,
    api_call: ApiCallFacts | None = None,
    usage: Usage | None = None,
    message: str | None = None,
    code: str | None = None,
    saved_events: int | None = None,
) -> TerminalEvent:
    """The terminal event of a run that ended with ``status``: usage and timings from its api-call row when
    there is one (else ``api_call`` and ``usage`` as the turn measured them); a failure named by
    ``code``/``message``, else by the row, else by the status."""
    facts = api_call
    if call is not None:
        facts = ApiCallFacts(call.id, call.latency_ms, call.time_to_first_token_ms)
        usage = Usage(call.prompt_tokens, call.completion_tokens, call.total_tokens, call.tokens_estimated)
    error = None
    if status not in DONE_STATUSES:
        error = RunError(code or (call.error_code if call else None) or status,
                         message or (call.error_message if call else None) or status)
    return TerminalEvent(n, status, user_message_id, assistant_message_id, facts, usage, error, saved_events)


def _s(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def event_json(event: RunEvent) -> dict[str, Any]:
    """The event's JSON object (the ``data`` of a native SSE event): the wire format of every API view."""
    if isinstance(event, TextDeltaEvent):
        return {"text": event.text}
    if not isinstance(event, TerminalEvent):
        return _tool_json(event)
    data: dict[str, Any] = {"status": event.status, "message_ids": {
        "user": _s(event.user_message_id), "assistant": _s(event.assistant_message_id)}}
    if event.api_call is not None:
        data["api_call_id"] = str(event.api_call.id)
    if event.usage is not None:
        u = event.usage
        data["usage"] = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                         "total_tokens": u.total_tokens, "estimated": u.estimated}
    if event.api_call is not None:
        data["latency_ms"] = event.api_call.latency_ms
        data["time_to_first_token_ms"] = event.api_call.time_to_first_token_ms
    if event.error is not None:
        data["error"] = {"code": event.error.code, "message": event.error.message}
    if event.saved_events is not None:
        data["saved_events"] = event.saved_events
    return data


def event_of_json(n: int, kind: str, data: dict[str, Any]) -> RunEvent:
    """The inverse of :func:`event_json` (what a follower on another process rebuilds); a ``ValueError`` or
    ``KeyError`` for anything else."""
    if kind == "delta":
        return TextDeltaEvent(n, str(data["text"]))
    if kind in TOOL_KINDS:
        return _tool_of_json(n, kind, data)
    if kind not in ("done", "error"):
        raise ValueError(f"unknown event kind {kind!r}")
    ids = data.get("message_ids") or {}
    call = None
    if data.get("api_call_id") is not None:
        call = ApiCallFacts(uuid.UUID(str(data["api_call_id"])), data.get("latency_ms"),
                            data.get("time_to_first_token_ms"))
    u = data.get("usage")
    usage = None if u is None else Usage(u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens"),
                                         bool(u.get("estimated", False)))
    e = data.get("error")
    error = None if e is None else RunError(str(e["code"]), str(e["message"]))
    return TerminalEvent(n, str(data["status"]), _uuid(ids.get("user")), _uuid(ids.get("assistant")), call, usage,
                         error, data.get("saved_events"))


def _tool_json(event: ToolEvent) -> dict[str, Any]:
    if isinstance(event, ToolCallStartedEvent):
        return {"index": event.index, "id": event.call_id, "name": event.name}
    if isinstance(event, ToolArgumentsEvent):
        return {"index": event.index, "arguments": event.text}
    if isinstance(event, ToolCallDoneEvent):
        return {"index": event.index, "id": event.call_id, "name": event.name, "arguments": event.arguments}
    return {"tool_call_id": event.call_id, "content": event.content, "is_error": event.is_error}


def _tool_of_json(n: int, kind: str, data: dict[str, Any]) -> ToolEvent:
    if kind == "tool_call.started":
        call_id = data.get("id")
        return ToolCallStartedEvent(n, int(data["index"]), None if call_id is None else str(call_id),
                                    str(data["name"]))
    if kind == "tool_call.arguments":
        return ToolArgumentsEvent(n, int(data["index"]), str(data["arguments"]))
    if kind == "tool_call.done":
        return ToolCallDoneEvent(n, int(data["index"]), str(data["id"]), str(data["name"]), str(data["arguments"]))
    return ToolResultEvent(n, str(data["tool_call_id"]), str(data["content"]), bool(data.get("is_error", False)))
