"""The JSON bodies of the native API (requests refuse unknown fields; every text is checked as the stores check it)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ....entities import Agent, Message, MessageToolCall, Session, check_text
from ...runs import RunError, Usage

__all__ = [
    "AgentOut", "MessageIn", "MessageOut", "Page", "RunOut", "SessionIn", "SessionOut", "SessionPatch", "UsageDaily",
    "UsageDay",
]

T = TypeVar("T")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _text(value: str | None, what: str) -> str | None:
    if value is not None:
        check_text(value, what)
        if "\x00" in value and what != "content":
            raise ValueError(f"{what} must not contain NUL characters")
    return value


class MessageIn(_In):
    content: str = Field(min_length=1, max_length=500_000, description="The user's message.")
    stream: bool = Field(True, description="Stream the run's events as SSE (else wait and return the reply).")
    on_disconnect: Literal["continue", "cancel"] = Field(
        "continue", description="`continue` (default): the run finishes and is saved whatever the client does; "
        "`cancel`: a disconnect of this request stops the run (saved `cancelled`).",
    )
    agent: str | None = Field(None, min_length=1, max_length=200, description="An agent row's code (this tenant).")

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must not be blank")
        _text(v, "content")
        return v


class SessionIn(_In):
    id: uuid.UUID | None = Field(None, description="Choose the id (a UUID); default: a new UUID v7.")
    title: str | None = Field(None, max_length=500)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return _text(v, "title")


class SessionPatch(_In):
    title: str | None = Field(..., max_length=500, description="The new title (null clears it).")

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return _text(v, "title")


class SessionOut(BaseModel):
    id: uuid.UUID
    title: str | None
    agent_id: uuid.UUID | None
    metadata: dict[str, Any]
    create_time: datetime
    update_time: datetime
    message_count: int | None = Field(None, description="How many messages it holds (in the list of sessions).")

    @classmethod
    def of(cls, s: Session, message_count: int | None = None) -> SessionOut:
        return cls(id=s.id, title=s.title, agent_id=s.agent_id, metadata=s.metadata, create_time=s.create_time,
                   update_time=s.update_time, message_count=message_count)


class MessageOut(BaseModel):
    id: uuid.UUID
    seq: int
    role: str
    content: str
    status: str = Field(description="complete, streaming, cancelled, error or interrupted")
    parent_message_id: uuid.UUID | None
    create_time: datetime
    update_time: datetime
    tool_calls: list[MessageToolCall] = Field(default_factory=list, description="An assistant's tool calls.")
    tool_call_id: str | None = Field(None, description="On a tool message: the call it answers.")
    is_error: bool = Field(False, description="On a tool message: the result is an error.")

    @classmethod
    def of(cls, m: Message) -> MessageOut:
        return cls(id=m.id, seq=m.seq, role=m.role, content=m.content, status=m.status,
                   parent_message_id=m.parent_message_id, create_time=m.create_time, update_time=m.update_time,
                   tool_calls=m.tool_calls, tool_call_id=m.tool_call_id, is_error=m.is_error)


class Page(BaseModel, Generic[T]):
    data: list[T]
    offset: int
    limit: int
    #: where the next page starts; null on the last page
    next_offset: int | None
    #: the next page by keyset (``?cursor=`` on session lists, ``?after_seq=`` on transcripts): every page costs
    #: what the first does, where an offset walks every row before it; null on the last page
    next_cursor: str | None = None
    next_after_seq: int | None = None


class AgentOut(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    model: str
    enabled: bool

    @classmethod
    def of(cls, a: Agent) -> AgentOut:
        return cls(id=a.id, code=a.agent_code, name=a.agent_name, model=a.model_name, enabled=a.agent_status)


class RunOut(BaseModel):
    id: uuid.UUID = Field(description="The run's id: also the id of the reply message it writes.")
    session_id: uuid.UUID
    status: str = Field(description="streaming, complete, cancelled, error or interrupted")
    content: str | None = None
    message_ids: dict[str, uuid.UUID | None] = Field(default_factory=dict)
    usage: Usage | None = None
    error: RunError | None = None
    events: int = Field(0, description="Number of the last event of the run's log so far.")


class UsageDay(BaseModel):
    """One model's LLM calls on one UTC day."""

    day: date
    model: str
    calls: int
    calls_by_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    p50_time_to_first_token_ms: float | None
    p95_time_to_first_token_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None


class UsageDaily(BaseModel):
    start: date = Field(description="The first UTC day of the window.")
    end: date = Field(description="The last UTC day of the window (today).")
    rows: list[UsageDay] = Field(description="One row per day and model that had calls, by day then model.")
    truncated: bool = Field(False, description="More calls than one answer groups (100,000): the oldest are left out.")
