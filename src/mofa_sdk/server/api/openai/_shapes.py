"""OpenAI object shapes: chat completions and their chunks, and the Responses and Conversations views' ids,
items, conversations and responses.

A conversation is a session (``conv_<uuid hex>``), an item is a message (``msg_<uuid hex>``), a response is a
run (``resp_<uuid hex>``: the run's id, which is also its reply message's id). Nothing here reads or writes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ....entities import LLMApiCall, Message, Session
from ....llm import ToolCall
from ...http import ApiError
from ...runs import RunError, Usage

__all__ = [
    "chunk", "completion", "conversation_obj", "decode_id", "encode_id", "finish_reason", "item_obj", "openai_error",
    "response_obj", "response_status", "tool_call_delta", "usage_chunk",
]

#: the response status a reply row's (or run's) status reads as
_STATUS = {"streaming": "in_progress", "complete": "completed", "cancelled": "cancelled", "error": "failed",
           "interrupted": "incomplete"}


def encode_id(prefix: str, value: uuid.UUID) -> str:
    return f"{prefix}_{value.hex}"


def decode_id(prefix: str, raw: str, what: str) -> uuid.UUID:
    """``conv_…`` (or a bare UUID) to the UUID; anything else is a 404, as an id that does not exist."""
    body = raw[len(prefix) + 1:] if raw.startswith(prefix + "_") else raw
    try:
        return uuid.UUID(body)
    except ValueError:
        raise ApiError(404, f"{what} {raw[:80]!r} not found") from None


def _ts(m: Message | Session) -> int:
    return int(m.create_time.timestamp())


def conversation_obj(s: Session) -> dict[str, Any]:
    meta = {k: v for k, v in s.metadata.items() if isinstance(v, str)}
    return {"id": encode_id("conv", s.id), "object": "conversation", "created_at": _ts(s), "metadata": meta}


def item_obj(m: Message) -> dict[str, Any]:
    part = "output_text" if m.role == "assistant" else "input_text"
    content: dict[str, Any] = {"type": part, "text": m.content}
    if part == "output_text":
        content["annotations"] = []
    status = "completed" if m.status == "complete" else ("in_progress" if m.status == "streaming" else "incomplete")
    return {"id": encode_id("msg", m.id), "type": "message", "role": m.role, "status": status,
            "content": _input_parts(m) if m.parts else [content]}


def _input_parts(m: Message) -> list[dict[str, Any]]:
    """A user row's stored input parts as Responses content parts (text, images and files, as given)."""
    out: list[dict[str, Any]] = []
    for p in m.parts:
        if p.type == "text":
            out.append({"type": "input_text", "text": p.text or ""})
        elif p.type == "file":
            out.append({"type": "input_file", "filename": p.filename, "file_data": p.url})
        else:
            out.append({"type": "input_image", "image_url": p.url, "detail": p.detail or "auto"})
    return out


def response_status(status: str) -> str:
    return _STATUS.get(status, "failed")


def response_obj(
    rid: uuid.UUID,
    *,
    status: str,
    text: str,
    created_at: int,
    meta: dict[str, Any],
    session_id: uuid.UUID,
    call: LLMApiCall | None = None,
    usage: Usage | None = None,
    error: RunError | None = None,
    model: str | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Response object: ``status`` is a run status (streaming, complete, …), ``meta`` what the request set;
    its model the one that answered (``model``, else the api-call row's), else the one asked for. ``calls``:
    the ``function_call`` items of a reply that made calls (then a message item only when it has text)."""
    st = response_status(status)
    output: list[dict[str, Any]] = []
    if text or (st != "in_progress" and not calls):
        output.append({"id": encode_id("msg", rid), "type": "message", "role": "assistant",
                       "status": "completed" if st == "completed" else ("in_progress" if st == "in_progress"
                                                                         else "incomplete"),
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
    output += calls or []
    if call is not None:
        usage = Usage(call.prompt_tokens, call.completion_tokens, call.total_tokens)
    out_usage = None
    if usage is not None:
        out_usage = {"input_tokens": usage.prompt_tokens or 0, "output_tokens": usage.completion_tokens or 0,
                     "total_tokens": usage.total_tokens or 0,
                     "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    err = None
    if st == "failed":
        err = {"code": "server_error", "message": (error.message if error is not None else "") or "the response failed"}
    return {
        "id": encode_id("resp", rid), "object": "response", "created_at": created_at, "status": st,
        "background": bool(meta.get("background", False)), "error": err,
        "incomplete_details": {"reason": "interrupted"} if st == "incomplete" else None,
        "instructions": meta.get("instructions"), "max_output_tokens": meta.get("max_output_tokens"),
        "model": model or (call.model_name if call is not None else None) or meta.get("model") or "",
        "output": output, "parallel_tool_calls": meta.get("parallel_tool_calls", True),
        "previous_response_id": meta.get("previous_response_id"),
        "conversation": {"id": encode_id("conv", session_id)} if meta.get("conversation") else None,
        "metadata": meta.get("metadata") or {}, "store": True, "temperature": meta.get("temperature"),
        "text": {"format": {"type": "text"}}, "tool_choice": meta.get("tool_choice") or "auto",
        "tools": [_tool_obj(t) for t in meta.get("tools") or []], "max_tool_calls": meta.get("max_tool_calls"),
        "top_p": None,
        "truncation": "disabled", "usage": out_usage, "user": None,
    }


# -- chat completions --------------------------------------------------------------------------------------
_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The error object of a failed stream (sent inside the stream: its status is already 200)."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def finish_reason(provider_reason: str | None) -> str:
    """OpenAI's finish reasons this service can report; a provider's own (or none) reads ``stop``."""
    return provider_reason if provider_reason in ("length", "content_filter") else "stop"


# -- the response ------------------------------------------------------------------------------------------
def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens or 0, "completion_tokens": usage.completion_tokens or 0,
            "total_tokens": usage.total_tokens or 0}


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None, *,
          usage: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage:
        out["usage"] = None
    return out


def usage_chunk(cid: str, model: str, created: int, usage: Usage | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": _usage(usage)}


def tool_call_delta(index: int, *, call_id: str | None = None, name: str | None = None,
                    arguments: str | None = None) -> dict[str, Any]:
    """A chunk's ``delta`` for tool call ``index``: id, type and name when given (a call's first chunk), and
    an arguments fragment."""
    entry: dict[str, Any] = {"index": index}
    if call_id is not None:
        entry["id"] = call_id
        entry["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        entry["function"] = function
    return {"tool_calls": [entry]}


def completion(cid: str, model: str, text: str, finish: str, usage: Usage | None,
               tool_calls: tuple[ToolCall, ...] = ()) -> dict[str, Any]:
    """A ``chat.completion``; a reply making calls has ``content`` null when it has no text."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["content"] = text or None
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                              "arguments": c.arguments}}
                                 for c in tool_calls]
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _usage(usage)}


def _tool_obj(tool: dict[str, Any]) -> dict[str, Any]:
    """A request's function tool as the response object echoes it: every field of the spec's FunctionTool,
    null where the request left it out."""
    return {"type": "function", "name": tool.get("name"), "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": tool.get("strict")}
