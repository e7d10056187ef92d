"""OpenAI object shapes for the Responses and Conversations views: ids, items, conversations, responses.

A conversation is a session (``conv_<uuid hex>``), an item is a message (``msg_<uuid hex>``), a response is a
run (``resp_<uuid hex>``: the run's id, which is also its reply message's id). Nothing here reads or writes.
"""

from __future__ import annotations

import uuid
from typing import Any

from ....entities import LLMApiCall, Message, Session
from ...http import ApiError
from ...runs import RunError, Usage

__all__ = [
    "conversation_obj", "decode_id", "encode_id", "input_messages", "item_obj", "response_obj",
    "response_status",
]

#: the response status a reply row's (or run's) status reads as
_STATUS = {"streaming": "in_progress", "complete": "completed", "cancelled": "cancelled", "error": "failed",
           "interrupted": "incomplete"}
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


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
            "content": [content]}


def input_messages(raw: Any, param: str = "input") -> list[tuple[str, str]]:
    """A string or a list of message items (``EasyInputMessage`` or ``type: message``) as (role, text);
    any other item type, role or content part is a 400 naming it."""
    if isinstance(raw, str):
        return [("user", raw)]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, f"{param} must be a string or a non-empty list of message items", "invalid_value")
    out = []
    for i, item in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object", "invalid_type")
        kind = item.get("type", "message")
        if kind != "message":
            raise ApiError(400, f"{where}.type {str(kind)[:40]!r} is not supported: only message items are",
                           "invalid_value")
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise ApiError(400, f"{where}.role must be user, assistant, system or developer", "invalid_value")
        content = item.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text") \
                        or not isinstance(part.get("text"), str):
                    got = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ApiError(400, f"{where}.content[{j}]: only text parts are supported, got {str(got)[:40]!r}",
                                   "invalid_value")
                texts.append(part["text"])
            text = "".join(texts)
        else:
            raise ApiError(400, f"{where}.content must be a string or a list of text parts", "invalid_type")
        out.append((role, text))
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
) -> dict[str, Any]:
    """A Response object: ``status`` is a run status (streaming, complete, …), ``meta`` what the request set."""
    st = response_status(status)
    output: list[dict[str, Any]] = []
    if text or st != "in_progress":
        output.append({"id": encode_id("msg", rid), "type": "message", "role": "assistant",
                       "status": "completed" if st == "completed" else ("in_progress" if st == "in_progress"
                                                                         else "incomplete"),
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
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
        "model": (call.model_name if call is not None else None) or meta.get("model") or "",
        "output": output, "parallel_tool_calls": False, "previous_response_id": meta.get("previous_response_id"),
        "conversation": {"id": encode_id("conv", session_id)} if meta.get("conversation") else None,
        "metadata": meta.get("metadata") or {}, "store": True, "temperature": meta.get("temperature"),
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
        "truncation": "disabled", "usage": out_usage, "user": None,
    }
