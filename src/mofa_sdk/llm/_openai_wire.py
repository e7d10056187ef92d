"""Messages and tool parameters in OpenAI's chat-completions request format. Pure code, no I/O.

A ``tool`` message's ``is_error`` has no field in OpenAI's format: its text is what tells the model (the
agent writes it so), and it is sent as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._messages import FilePart, ImagePart, TextPart
from ._provider import ChatParams
from ._types import ChatMessage

__all__ = ["wire_messages", "wire_tool_options"]


def wire_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [_wire(m) for m in messages]


def _wire(message: ChatMessage) -> dict[str, Any]:
    if message.tool_calls:
        # text, even empty: llama_cpp.server refuses a null content and its chat templates read the key;
        # OpenAI takes "" beside calls
        wired: dict[str, Any] = {"role": "assistant", "content": message.content}
        wired["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        return wired
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.parts:
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                image: dict[str, Any] = {"url": part.url}
                if part.detail is not None:
                    image["detail"] = part.detail
                content.append({"type": "image_url", "image_url": image})
            elif isinstance(part, FilePart):
                content.append({"type": "file", "file": {"filename": part.filename, "file_data": part.data}})
        return {"role": message.role, "content": content}
    return {"role": message.role, "content": message.content}


def wire_tool_options(params: ChatParams) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as request fields: only those that are set
    (``parallel_tool_calls`` without tools is a 400 at OpenAI, so it goes only with them)."""
    out: dict[str, Any] = {}
    if params.tools:
        out["tools"] = [t.openai_schema() for t in params.tools]
        if params.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = params.parallel_tool_calls
    choice = params.tool_choice
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif choice is not None:
        out["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return out
