"""Function tools in the Responses and Conversations views: the request's tools and tool choice, input items as
messages, and a stored row's tool calls and results as ``function_call`` / ``function_call_output`` items.

A reply row's calls are ``function_call`` items whose id is ``fc_<row uuid hex>_<index>`` (stable: the row and
the call's position in it); a ``tool`` row is a ``function_call_output`` item ``fco_<row uuid hex>``. Nothing
here reads or writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ....entities import Message, MessageToolCall
from ....errors import ConfigError
from ....llm import ChatMessage, ToolSpec
from ....persistence import stored_parts
from ...http import ApiError
from ...runs import Principal, ToolArgumentsEvent, ToolCallDoneEvent, ToolCallStartedEvent, ToolEvent
from ._shapes import decode_id, encode_id, item_obj
from .schemas import CompactionItem, InputItem, ParamError

__all__ = [
    "call_item", "call_items", "decode_item_id", "input_messages", "items_of_row", "output_item", "rows_of",
    "tool_choice", "tool_event", "tool_specs",
]


def tool_specs(tools: Sequence[dict[str, Any]] | None) -> tuple[ToolSpec, ...]:
    """The request's function tools (``{"type": "function", "name", "description"?, "parameters"?}``); a 400
    naming the entry for any other kind (this service runs no hosted tools)."""
    specs: list[ToolSpec] = []
    for i, entry in enumerate(tools or ()):
        if entry.get("type") != "function":
            raise ParamError(f"tools[{i}]: only function tools are supported, got {entry.get('type')!r}",
                             f"tools[{i}]", "unsupported_parameter")
        parameters = entry.get("parameters") or {"type": "object", "properties": {}}
        try:
            specs.append(ToolSpec.from_openai({"type": "function", "function": {
                "name": entry.get("name"), "description": entry.get("description"), "parameters": parameters}}))
        except ConfigError as exc:
            raise ParamError(f"tools[{i}]: {exc}", f"tools[{i}]") from None
    names = [t.name for t in specs]
    if len(set(names)) != len(names):
        raise ParamError(f"tools: two tools have the same name ({sorted(names)})", "tools")
    return tuple(specs)


def tool_choice(value: str | dict[str, Any] | None, specs: Sequence[ToolSpec],
                max_tool_calls: int | None) -> str | None:
    """``tool_choice`` as the llm layer's ("auto", "none", "required" or a tool's name); ``max_tool_calls`` 0
    is "none"."""
    if max_tool_calls == 0:
        return "none"
    if isinstance(value, dict):
        name = value.get("name") if value.get("type") == "function" else None
        if not isinstance(name, str) or name not in {t.name for t in specs}:
            raise ParamError('tool_choice must be "auto", "none", "required" or {"type": "function", "name": ...} '
                             "naming one of tools", "tool_choice")
        return name
    if value is not None and value not in ("auto", "none", "required"):
        raise ParamError(f'tool_choice must be "auto", "none" or "required", got {value!r}', "tool_choice")
    if value == "required" and not specs:
        raise ParamError('tool_choice "required" needs tools', "tool_choice")
    return value


def input_messages(items: Sequence[InputItem]) -> list[ChatMessage]:
    """Input items as messages: consecutive ``function_call`` items (and an assistant message right before
    them) are one assistant message making those calls, as the model made them."""
    out: list[ChatMessage] = []
    for item in items:
        if isinstance(item, CompactionItem):
            out += item.chat_messages()
            continue
        m = item.chat_message()
        prev = out[-1] if out else None
        if m.tool_calls and prev is not None and prev.role == "assistant":
            out[-1] = ChatMessage(role="assistant", content=prev.content, tool_calls=(*prev.tool_calls,
                                                                                      *m.tool_calls))
        else:
            out.append(m)
    return out


def rows_of(who: Principal, session_id: uuid.UUID, messages: Sequence[ChatMessage]) -> list[Message]:
    """Rows of ``session_id`` for input messages (tool calls and results included), as the key's user."""
    return [Message(session_id=session_id, tenant_id=who.tenant_id, user_id=who.user_id, role=m.role,
                    content=m.content, tool_call_id=m.tool_call_id, parts=stored_parts(m.parts),
                    tool_calls=[MessageToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in m.tool_calls])
            for m in messages]


def call_item(row_id: uuid.UUID, index: int, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": f"fc_{row_id.hex}_{index}", "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def call_items(row: Message) -> list[dict[str, Any]]:
    """The ``function_call`` items of a reply row's calls."""
    status = "completed" if row.status == "complete" else "incomplete"
    return [call_item(row.id, i, c.id, c.name, c.arguments, status) for i, c in enumerate(row.tool_calls)]


def output_item(row: Message) -> dict[str, Any]:
    """A ``tool`` row as its ``function_call_output`` item."""
    return {"id": encode_id("fco", row.id), "type": "function_call_output", "call_id": row.tool_call_id or "",
            "output": row.content, "status": "completed"}


def items_of_row(row: Message) -> list[dict[str, Any]]:
    """A row's items: a message (a reply making calls: only when it has text), its calls, or a tool result."""
    if row.role == "tool":
        return [output_item(row)]
    if row.tool_calls:
        return [*([item_obj(row)] if row.content else []), *call_items(row)]
    return [item_obj(row)]


def decode_item_id(raw: str) -> tuple[uuid.UUID, int | None]:
    """An item id's row and, for a ``function_call`` item, the call's index in it (a 404 otherwise)."""
    if raw.startswith("fc_"):
        row, _, index = raw[3:].partition("_")
        if not index.isdigit():
            raise ApiError(404, f"item {raw[:80]!r} not found")
        return decode_id("fc", f"fc_{row}", "item"), int(index)
    if raw.startswith("fco_"):
        return decode_id("fco", raw, "item"), None
    return decode_id("msg", raw, "item"), None


def tool_event(event: ToolEvent, rid: uuid.UUID) -> tuple[str, dict[str, Any]] | None:
    """A run's tool event as the Responses stream shows it (its kind and fields), a call at output index
    ``1 + index`` (after the message item); None for what is not shown (a server-run tool's result)."""
    if isinstance(event, ToolCallStartedEvent):
        item = call_item(rid, event.index, event.call_id or "", event.name, "", "in_progress")
        return "response.output_item.added", {"output_index": 1 + event.index, "item": item}
    if isinstance(event, ToolArgumentsEvent):
        return "response.function_call_arguments.delta", {"item_id": f"fc_{rid.hex}_{event.index}",
                                                          "output_index": 1 + event.index, "delta": event.text}
    if isinstance(event, ToolCallDoneEvent):
        return "response.function_call_arguments.done", {"item_id": f"fc_{rid.hex}_{event.index}",
                                                         "output_index": 1 + event.index, "name": event.name,
                                                         "arguments": event.arguments}
    return None
