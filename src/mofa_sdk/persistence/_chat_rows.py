"""The one conversion between stored message rows and the llm layer's messages, both ways: the window
loader, the plugin that saves each step of a turn and the command line all go through here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..entities import Message, MessagePart, MessageStatus, MessageToolCall
from ..ids import uuid7
from ..llm import ChatMessage, ContentPart, FilePart, ImagePart, TextPart, ToolCall

__all__ = ["chat_message", "message_row", "stored_parts", "stored_tool_calls", "tool_calls_of"]


def stored_tool_calls(calls: Sequence[ToolCall]) -> list[MessageToolCall]:
    """An assistant's calls as its row keeps them (arguments verbatim)."""
    return [MessageToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def tool_calls_of(row: Message) -> tuple[ToolCall, ...]:
    """The calls a stored assistant row makes, as the llm layer's type."""
    return tuple(ToolCall(c.id, c.name, c.arguments) for c in row.tool_calls)


def stored_parts(parts: Sequence[ContentPart]) -> list[MessagePart]:
    """A user message's input parts as its row keeps them."""
    return [
        MessagePart(type="text", text=p.text) if isinstance(p, TextPart)
        else MessagePart(type="file", filename=p.filename, url=p.data) if isinstance(p, FilePart)
        else MessagePart(type="image", url=p.url, detail=p.detail)
        for p in parts
    ]  # fmt: skip


def _chat_parts(parts: Sequence[MessagePart]) -> tuple[ContentPart, ...]:
    return tuple(
        TextPart(p.text or "") if p.type == "text"
        else FilePart(p.filename or "", p.url or "") if p.type == "file"
        else ImagePart(p.url or "", p.detail)
        for p in parts
    )  # fmt: skip


def chat_message(row: Message) -> ChatMessage:
    """A stored row as the model sees it. A ``tool`` row stored without a call id (before migration 0009)
    answers no call anyone can name: the caller leaves it out of what is sent (see ``_load_window``)."""
    if not (row.tool_calls or row.parts or row.role == "tool"):  # nearly every row: text only
        return ChatMessage(role=row.role, content=row.content, status=row.status, id=row.id)
    return ChatMessage(
        role=row.role,
        content=row.content,
        status=row.status,
        id=row.id,
        tool_calls=tool_calls_of(row),
        tool_call_id=row.tool_call_id,
        is_error=row.is_error,
        parts=_chat_parts(row.parts),
    )


def message_row(
    message: ChatMessage,
    *,
    session_id: uuid.UUID,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    agent_id: uuid.UUID | None = None,
    parent_message_id: uuid.UUID | None = None,
    status: MessageStatus | None = None,
    id: uuid.UUID | None = None,
) -> Message:
    """The row storing ``message`` (its id, when it has one and ``id`` is not given; its status unless
    ``status`` is given)."""
    return Message(
        id=id or message.id or uuid7(),
        session_id=session_id,
        tenant_id=tenant_id,
        user_id=user_id,
        agent_id=agent_id,
        parent_message_id=parent_message_id,
        role=message.role,
        content=message.content,
        status=status or message.status,
        tool_calls=stored_tool_calls(message.tool_calls),
        tool_call_id=message.tool_call_id,
        is_error=message.is_error,
        parts=stored_parts(message.parts),
    )
