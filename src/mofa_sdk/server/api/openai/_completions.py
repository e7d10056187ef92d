"""OpenAI's legacy Completions (``POST /v1/completions``), the route LlamaIndex's ``OpenAILike`` calls by default.

A completion is a run like a chat completion's: the prompt is the user message, sent alone (a legacy client
keeps no conversation; an agent row's system prompt still goes first) and saved with the reply to the session
named by ``X-Mofa-Session-Id`` or to a new one. The reply is rendered as a ``text_completion`` object, or as its
stream chunks (``choices[0].text``) ending with ``data: [DONE]``. What a chat model cannot do here (several
prompts, token-id prompts, ``suffix``, ``logprobs``, ``best_of`` > 1, ``n`` > 1) is refused with a 400 naming
the field; ``echo`` puts the prompt before the reply.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from ....entities import check_text
from ....errors import MofaError, TenantMismatchError
from ....llm import ChatMessage
from ....persistence import SettingsRequest, TurnOptions
from ...http import KEEPALIVE, ApiError, Registry, SSEResponse, Who
from ...runs import Run, RunEvent, TerminalEvent, TextDeltaEvent, Usage, follow_local
from ._shapes import finish_reason, openai_error
from .schemas import FORWARDED, ParamError

__all__ = ["CompletionRequest", "router"]

router = APIRouter(tags=["openai"])

_SESSION_HEADER = "X-Mofa-Session-Id"
_DONE = b"data: [DONE]\n\n"
#: refused when given (a chat model has no log probabilities, no suffix to fill in, one answer per run)
_REFUSED = ("suffix", "logprobs")


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The fields this route reads; others are ignored, those it cannot do refused."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[str]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None
    n: Literal[1] | None = None
    best_of: Literal[1] | None = None
    echo: bool | None = False
    suffix: Any = None
    logprobs: Any = None

    @field_validator(*_REFUSED)
    @classmethod
    def _refused(cls, value: Any) -> Any:
        if value is not None and value is not False:
            raise PydanticCustomError("unsupported_parameter", "this service does not support it (a chat model "
                                      "has no suffix to fill in and no log probabilities)")
        return value

    def text(self) -> str:
        """The prompt's one string; a 400 naming ``prompt`` for several, none, or text no database holds."""
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ParamError(f"prompt: one prompt per request is supported, got {len(self.prompt)}", "prompt",
                                 "unsupported_parameter")
            (text,) = self.prompt
        else:
            text = self.prompt
        try:
            check_text(text, "prompt")
        except MofaError as exc:
            raise ParamError(str(exc), "prompt") from None
        if not text.strip():
            raise ParamError("prompt must be non-empty text (it is the user message saved)", "prompt")
        return text

    def forwarded(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        return {k: extra[k] for k in FORWARDED if extra.get(k) is not None}


def _session_id(header: str | None) -> uuid.UUID | None:
    if header is None or not header.strip():
        return None
    try:
        return uuid.UUID(header.strip())
    except ValueError:
        raise ParamError(f"{_SESSION_HEADER} must be a UUID, got {header[:60]!r}", _SESSION_HEADER) from None


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens or 0, "completion_tokens": usage.completion_tokens or 0,
            "total_tokens": usage.total_tokens or 0}


def text_completion(cid: str, model: str, created: int, text: str, finish: str | None) -> dict[str, Any]:
    """A ``text_completion`` object (whole, or one stream chunk of it) with one choice."""
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}


@router.post("/v1/completions", summary="OpenAI Completions (legacy): a run for one prompt, streamed or whole")
async def completions(
    req: CompletionRequest,
    registry: Registry,
    who: Who,
    session_header: Annotated[str | None, Header(alias=_SESSION_HEADER)] = None,
) -> Any:
    prompt = req.text()
    sid = _session_id(session_header)
    is_agent = await registry.store.get_agent_by_code_and_tenant(who.tenant_id, req.model) is not None
    asked = SettingsRequest(agent=req.model) if is_agent else SettingsRequest(agent=None, model=req.model)
    options = TurnOptions(temperature=req.temperature, max_tokens=req.max_tokens, extra=req.forwarded() or None,
                          messages=[ChatMessage(role="user", content=prompt)])
    try:
        run = await registry.start_run(who, sid, prompt, asked, options)
    except TenantMismatchError as exc:  # another user's (or tenant's) id: exactly like one that does not exist
        raise ApiError(404, f"session {sid} not found") from exc
    headers = {_SESSION_HEADER.lower(): str(run.session_id), "mofa-run-id": str(run.id)}
    cid = f"cmpl-{run.id}"
    echo = prompt if req.echo else ""
    if req.stream:
        usage = req.stream_options is not None and req.stream_options.include_usage
        frames = _chunks(run, follow_local(run, 0, registry.config), cid, req.model, echo, usage)
        return SSEResponse(frames, headers=headers)
    await run.wait_finished()
    term = run.terminal
    if term is None or term.error is not None:
        message = term.error.message if term is not None and term.error is not None else "the provider failed"
        raise ApiError(502, message, term.error.code if term is not None and term.error is not None else None,
                       headers=headers)
    body = text_completion(cid, req.model, int(time.time()), echo + "".join(run.parts),
                           finish_reason(run.finish_reason))
    body["usage"] = _usage(term.usage)
    return JSONResponse(body, headers=headers)


async def _chunks(
    run: Run, events: AsyncIterator[list[RunEvent]], cid: str, model: str, echo: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    created = int(time.time())
    try:
        if echo:
            yield _data(text_completion(cid, model, created, echo, None))
        async for batch in events:
            if not batch:
                yield KEEPALIVE
                continue
            out: list[bytes] = []
            for e in batch:
                if isinstance(e, TextDeltaEvent):
                    out.append(_data(text_completion(cid, model, created, e.text, None)))
                elif not isinstance(e, TerminalEvent):
                    continue  # a tool event: a completion declares no tools
                elif e.error is None:
                    out.append(_data(text_completion(cid, model, created, "", finish_reason(run.finish_reason))))
                    if include_usage:
                        out.append(_data({"id": cid, "object": "text_completion", "created": created,
                                          "model": model, "choices": [], "usage": _usage(e.usage)}))
                else:  # as on Chat Completions: an error object, which the official client raises
                    out.append(_data(openai_error(502, e.error.message, code=e.error.code)))
            yield b"".join(out)
        yield _DONE
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
