"""OpenAI Chat Completions and Models: a view of the same runs the native API starts and follows.

A chat completion is a run (``RunRegistry.start_run``, through the turn engine): the client's messages are what
is sent, for this turn only (the client keeps its context, the window is not read). The engine saves what the
session lacks (``_threading``: the session a resent history continues, or the one ``X-Mofa-Session-Id`` names, or
a new one holding the whole request; with threading off, the last user message) and the reply. ``model`` is an
agent code of the tenant, else a model name for the default provider (recorded on the session). Its events are
rendered as ``chat.completion.chunk`` objects.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from ....errors import ServiceUnavailableError, TenantMismatchError
from ....llm import ChatMessage
from ....persistence import SettingsRequest, TurnOptions
from ...http import KEEPALIVE, ApiError, Registry, SSEResponse, Who
from ...runs import Principal, Run, RunEvent, RunRegistry, TerminalEvent, follow_local
from ._shapes import chunk, completion, finish_reason, openai_error, usage_chunk
from ._threading import thread_request
from .schemas import ChatRequest, ParamError

__all__ = ["SESSION_HEADER", "router"]

router = APIRouter(tags=["openai"])

#: names the session a chat completion is saved to, both ways
SESSION_HEADER = "X-Mofa-Session-Id"
_DONE = b"data: [DONE]\n\n"


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def _session_id(header: str | None) -> uuid.UUID | None:
    """The session the header names (the engine reads it with the owner check; one nobody holds is created
    under that id with the user message), else None: a new one."""
    if header is None or not header.strip():
        return None
    try:
        return uuid.UUID(header.strip())
    except ValueError:
        raise ParamError(f"{SESSION_HEADER} must be a UUID, got {header[:60]!r}", SESSION_HEADER) from None


def _turn(req: ChatRequest, messages: list[ChatMessage], earlier: list[ChatMessage]) -> TurnOptions:
    """The client's messages and sampling fields, for this turn only, over the agent row's (or the default
    provider's)."""
    extra = req.forwarded()
    if req.response_format is not None:
        extra["response_format"] = req.response_format
    return TurnOptions(temperature=req.temperature, max_tokens=req.max_completion_tokens or req.max_tokens,
                       extra=extra or None, messages=messages, earlier=earlier)


@router.post("/v1/chat/completions", summary="OpenAI Chat Completions: a run, streamed as chunks or answered whole")
async def chat_completions(
    req: ChatRequest,
    registry: Registry,
    who: Who,
    session_header: Annotated[str | None, Header(alias=SESSION_HEADER)] = None,
) -> Any:
    messages, user_text = req.conversation()
    sid = _session_id(session_header)
    earlier: list[ChatMessage] = []
    if registry.config.thread_history:  # a resent history continues its session; only what is new is saved
        threaded = await thread_request(registry.store, who, messages, sid)
        if threaded is not None:
            sid, user_text, earlier = threaded.session_id, threaded.new[-1].content, list(threaded.new[:-1])
    # an agent code answers with that agent; a plain model name with the default provider, never the
    # session's own agent row
    is_agent = await registry.store.get_agent_by_code_and_tenant(who.tenant_id, req.model) is not None
    asked = SettingsRequest(agent=req.model) if is_agent else SettingsRequest(agent=None, model=req.model)
    try:
        run = await registry.start_run(who, sid, user_text, asked, _turn(req, messages, earlier))
    except TenantMismatchError as exc:  # another user's (or tenant's) id: exactly like one that does not exist
        raise ApiError(404, f"session {sid} not found") from exc
    headers = {SESSION_HEADER.lower(): str(run.session_id), "mofa-run-id": str(run.id)}
    cid = f"chatcmpl-{run.id}"
    if req.stream:
        usage = req.stream_options is not None and req.stream_options.include_usage
        frames = _chunks(run, follow_local(run, 0, registry.config), cid, req.model, usage)
        return SSEResponse(frames, headers=headers)
    await run.wait_finished()
    term = run.terminal
    if term is None or term.error is not None:
        message = term.error.message if term is not None and term.error is not None else "the provider failed"
        raise ApiError(502, message, term.error.code if term is not None and term.error is not None else None,
                       headers=headers)
    body = completion(cid, req.model, "".join(run.parts), finish_reason(run.finish_reason), term.usage)
    return JSONResponse(body, headers=headers)


async def _chunks(
    run: Run, events: AsyncIterator[list[RunEvent]], cid: str, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    created = int(time.time())
    try:
        yield _data(chunk(cid, model, created, {"role": "assistant", "content": ""}, usage=include_usage))
        async for batch in events:
            if not batch:
                yield KEEPALIVE
                continue
            out: list[bytes] = []
            for e in batch:
                if not isinstance(e, TerminalEvent):
                    out.append(_data(chunk(cid, model, created, {"content": e.text}, usage=include_usage)))
                elif e.error is None:
                    out.append(_data(chunk(cid, model, created, {}, finish_reason(run.finish_reason),
                                           usage=include_usage)))
                    if include_usage:
                        out.append(_data(usage_chunk(cid, model, created, e.usage)))
                else:  # what OpenAI sends when a stream fails: an error object (the client raises it)
                    out.append(_data(openai_error(502, e.error.message, code=e.error.code)))
            yield b"".join(out)
        yield _DONE
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _model(model_id: str, created: float, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": int(created), "owned_by": owned_by}


async def _models(registry: RunRegistry, who: Principal) -> list[dict[str, Any]]:
    agents = await registry.store.list_agents(who.tenant_id)
    out = [_model(a.agent_code, a.create_time.timestamp(), "tenant") for a in agents if a.agent_status]
    try:
        default = registry.engine.default_provider.default_model
    except ServiceUnavailableError:  # no default provider configured: only the agent rows answer
        return out
    if all(m["id"] != default for m in out):
        out.append(_model(default, 0, "mofa"))
    return out


@router.get("/v1/models", summary="OpenAI Models: the tenant's agents (by code) and the default model")
async def list_models(registry: Registry, who: Who) -> Any:
    return {"object": "list", "data": await _models(registry, who)}


@router.get("/v1/models/{model_id}", summary="One model: an agent code of the tenant, or the default model")
async def get_model(model_id: str, registry: Registry, who: Who) -> Any:
    for m in await _models(registry, who):
        if m["id"] == model_id:
            return m
    raise ApiError(404, f"the model {model_id!r} does not exist", "model_not_found", param="model")
