"""OpenAI's wire shapes for Chat Completions and Models: the request body (pydantic), the error object of a
failed stream, the chunks. Errors answered with a status take OpenAI's shape in the HTTP layer's one mapping."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ....entities import check_text
from ....errors import MofaError
from ....llm import ChatMessage
from ...http import ApiError
from ...runs import Usage

__all__ = ["ChatRequest", "ParamError", "chunk", "completion", "finish_reason", "openai_error",
           "parse_chat_request", "usage_chunk"]

#: refused with 400 (the run machinery has no tool calls, no n > 1 and no log probabilities)
REFUSED = ("tools", "tool_choice", "functions", "function_call", "audio", "logprobs", "top_logprobs",
           "prediction", "web_search_options")
#: forwarded to the provider as request fields, when given
FORWARDED = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias")

_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The error object of a failed stream (sent inside the stream: its status is already 200)."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- the request -------------------------------------------------------------------------------------------
class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, refusal, …: ignored
    role: str
    content: str | list[_Part] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields this service reads; any other field is ignored (docs/openai-compatibility.md names them)."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)
    messages: list[_Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None
    max_completion_tokens: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None
    n: Literal[1] | None = None
    response_format: dict[str, Any] | None = None

    def forwarded(self) -> dict[str, Any]:
        """The sampling fields passed through to the provider's request as they came."""
        extra = self.model_extra or {}
        return {k: extra[k] for k in FORWARDED if extra.get(k) is not None}


def _text(message: _Message, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise _bad(f"messages[{index}].content: only text parts are supported, got {part.type!r}",
                       f"messages[{index}].content", code="unsupported_parameter")
    return "".join(p.text or "" for p in message.content)


_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def parse_chat_request(raw: bytes) -> tuple[ChatRequest, list[ChatMessage], str]:
    """The request, the messages to forward, and the last user message (what is saved). Raises an
    ``ApiError(400)`` naming the field (as ``param``) for anything this service cannot do."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _bad(f"malformed JSON body: {exc}", None) from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object", None)
    for name in REFUSED:
        value = data.get(name)
        if value is not None and value is not False and value != []:
            raise _bad(f"{name} is not supported by this service (no tool calls, audio or log probabilities)",
                       name, code="unsupported_parameter")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise _bad(f"{where}: {first.get('msg', 'invalid')}", where or None) from None
    forwarded: list[ChatMessage] = []
    last_user: str | None = None
    for i, m in enumerate(req.messages):
        role = _ROLES.get(m.role)
        if role is None:
            raise _bad(f"messages[{i}].role: {m.role!r} is not supported (system, developer, user, assistant)",
                       f"messages[{i}].role")
        text = _text(m, i)
        try:  # before anything is written: the run would create the session before the turn refuses it
            check_text(text, f"messages[{i}].content")
        except MofaError as exc:
            raise _bad(str(exc), f"messages[{i}].content") from None
        forwarded.append(ChatMessage(role=role, content=text))
        if role == "user":
            last_user = text
    if last_user is None or not last_user.strip():
        raise _bad("messages: the last user message must be non-empty text (it is what is saved)", "messages")
    return req, forwarded, last_user


class ParamError(ApiError):
    """A 400 naming the request field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(400, message, code or "invalid_request")
        self.param = param


def _bad(message: str, param: str | None, code: str | None = None) -> ParamError:
    return ParamError(message, param, code)


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


def completion(cid: str, model: str, text: str, finish: str, usage: Usage | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "finish_reason": finish, "logprobs": None}],
            "usage": _usage(usage)}
