"""OpenAI's wire shapes for Chat Completions and Models: the request body, the error body, the chunks.

Errors on these routes answer OpenAI's ``{"error": {"message", "type", "param", "code"}}``: the routes and the
app's handlers raise as everywhere else, and :class:`OpenAIErrorMiddleware` rewrites the native error body on
the way out (so a 401 from the auth middleware or a 413 from the body limit reads the same as a route's 400).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..entities import check_text
from ..errors import MofaError
from ..llm import ChatMessage
from ._errors import ApiError

__all__ = ["OPENAI_PATHS", "ChatRequest", "OpenAIErrorMiddleware", "ParamError", "chunk", "completion",
           "finish_reason", "openai_error", "parse_chat_request", "usage_chunk"]

#: path prefixes whose errors take OpenAI's shape
OPENAI_PATHS = ("/v1/chat/", "/v1/models")

#: refused with 400 (the run machinery has no tool calls, no n > 1 and no log probabilities)
REFUSED = ("tools", "tool_choice", "functions", "function_call", "audio", "logprobs", "top_logprobs",
           "prediction", "web_search_options")
#: forwarded to the provider as request fields, when given
FORWARDED = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias")

_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class OpenAIErrorMiddleware:
    """On :data:`OPENAI_PATHS`, a native error body (``{"error": {"code", "message"}}``) becomes OpenAI's, and
    the native 422 becomes OpenAI's 400. Only error responses are held (they are small); others pass as is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_PATHS):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            status, out = _converted(start["status"], bytes(body))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            # a bug: the app's handler (outside every middleware) logs it, but would answer the native shape
            if start is None:
                out = json.dumps(openai_error(500, "internal server error", code="internal")).encode()
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
                await send({"type": "http.response.body", "body": out})
            raise


def _converted(status: int, raw: bytes) -> tuple[int, bytes]:
    try:
        err = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return status, raw
    if not isinstance(err, dict):
        return status, raw
    # every native body carries OpenAI's ``type`` and ``param`` already; what differs on these routes is the
    # status of a validation error and the code of a refused key (converting twice changes nothing)
    status = 400 if status == 422 else status
    code = err.get("code")
    if status == 401:
        code = "invalid_api_key"
    body = openai_error(status, str(err.get("message", "")), code=code, param=err.get("param"))
    return status, json.dumps(body, ensure_ascii=False).encode()


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
def _usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    return {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def chunk(cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None, *,
          usage: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage:
        out["usage"] = None
    return out


def usage_chunk(cid: str, model: str, created: int, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
            "usage": _usage(usage)}


def completion(cid: str, model: str, text: str, finish: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "finish_reason": finish, "logprobs": None}],
            "usage": _usage(usage)}
