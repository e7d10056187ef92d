"""OpenAI Chat Completions and Models: a view of the same runs the native API starts and follows.

A chat completion is a run (``RunRegistry.start_run``, through the turn engine): the client's messages are what
is sent, for this turn only (the client keeps its context, the window is not read). The engine saves what the
session lacks (``_threading``: the session a resent history continues, or the one ``X-Mofa-Session-Id`` names, or
a new one holding the whole request; with threading off, :func:`request_tail`: the user message, or the tool
results answering the last reply's calls) and the reply. ``model`` is an agent code of the tenant, else a model
name for the default provider (recorded on the session). The client's ``tools`` are sent to the provider and never
run here: a reply making calls ends the turn (saved with its calls, ``finish_reason: tool_calls``). Its events are
rendered as ``chat.completion.chunk`` objects, a tool call's in OpenAI's ``delta.tool_calls`` shape.
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
from ....llm import ChatMessage, ContentPart
from ....persistence import SettingsRequest, TurnOptions
from ...http import KEEPALIVE, ApiError, Registry, SSEResponse, Who
from ...runs import (
    Principal,
    Run,
    RunEvent,
    RunRegistry,
    TerminalEvent,
    TextDeltaEvent,
    ToolArgumentsEvent,
    ToolCallDoneEvent,
    ToolCallStartedEvent,
    follow_local,
)
from ._shapes import chunk, completion, finish_reason, openai_error, tool_call_delta, usage_chunk
from ._threading import thread_request
from .schemas import ChatRequest, ParamError

__all__ = ["SESSION_HEADER", "request_tail", "router"]

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


def request_tail(messages: list[ChatMessage], *, with_calls: bool) -> tuple[list[ChatMessage], ChatMessage | None]:
    """What of a request is new, and saved: the messages after its last assistant message (system and
    developer messages are sent, not saved), split into the earlier ones and the user message (None: the
    tail ends with tool results, the client answering the last reply's calls). ``with_calls``: the tail
    starts at the assistant message whose calls its results answer (a session that does not hold that
    message yet). A 400 when the request ends with neither."""
    start = len(messages)
    while start and messages[start - 1].role != "assistant":
        start -= 1
    if with_calls and start and messages[start - 1].tool_calls and any(m.role == "tool" for m in messages[start:]):
        start -= 1
    tail = [m for m in messages[start:] if m.role != "system"]
    if tail and tail[-1].role == "user":
        if not tail[-1].content.strip():
            raise ParamError("messages: the last user message must have text (it is what is saved)", "messages")
        return tail[:-1], tail[-1]
    if tail and tail[-1].role == "tool":
        return tail, None
    raise ParamError("messages: the last message must be a user message or the tool results answering the "
                     "calls of the assistant message before it", "messages")


def _turn(req: ChatRequest, messages: list[ChatMessage], earlier: list[ChatMessage],
          user: ChatMessage | None) -> TurnOptions:
    """The client's messages, tools and sampling fields, for this turn only, over the agent row's (or the
    default provider's); the tail to save."""
    extra = req.forwarded()
    if req.response_format is not None:
        extra["response_format"] = req.response_format
    specs = req.tool_specs()
    parts: tuple[ContentPart, ...] = user.parts if user is not None else ()
    return TurnOptions(temperature=req.temperature, max_tokens=req.max_completion_tokens or req.max_tokens,
                       extra=extra or None, messages=messages, earlier=earlier, user_parts=parts, tools=specs,
                       tool_choice=req.choice(specs), parallel_tool_calls=req.parallel_tool_calls)


@router.post("/v1/chat/completions", summary="OpenAI Chat Completions: a run, streamed as chunks or answered whole")
async def chat_completions(
    req: ChatRequest,
    registry: Registry,
    who: Who,
    session_header: Annotated[str | None, Header(alias=SESSION_HEADER)] = None,
) -> Any:
    messages = req.conversation()
    sid = _session_id(session_header)
    if registry.config.thread_history:  # a resent history continues its session; only what is new is saved
        threaded = await thread_request(registry.store, who, messages, sid)
    else:
        threaded = None
    if threaded is not None:
        sid, new = threaded.session_id, list(threaded.new)
        earlier, user = (new[:-1], new[-1]) if new[-1].role == "user" else (new, None)
    else:
        # a session named by the header holds the last reply (and its calls); a new one gets the message making
        # them with their results, so its rows read user -> assistant (calls) -> tool results -> assistant
        earlier, user = request_tail(messages, with_calls=sid is None)
    options = _turn(req, messages, earlier, user)
    # an agent code answers with that agent; a plain model name with the default provider, never the
    # session's own agent row
    is_agent = await registry.store.get_agent_by_code_and_tenant(who.tenant_id, req.model) is not None
    asked = SettingsRequest(agent=req.model) if is_agent else SettingsRequest(agent=None, model=req.model)
    try:
        run = await registry.start_run(who, sid, None if user is None else user.content, asked, options)
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
    reason = "tool_calls" if run.tool_calls else finish_reason(run.finish_reason)
    body = completion(cid, req.model, run.text, reason, term.usage, run.tool_calls)
    return JSONResponse(body, headers=headers)


async def _chunks(
    run: Run, events: AsyncIterator[list[RunEvent]], cid: str, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    created = int(time.time())
    unnamed: set[int] = set()  # calls whose id the provider had not sent when they started
    try:
        yield _data(chunk(cid, model, created, {"role": "assistant", "content": ""}, usage=include_usage))
        async for batch in events:
            if not batch:
                yield KEEPALIVE
                continue
            out: list[bytes] = []
            for e in batch:
                if isinstance(e, TextDeltaEvent):
                    out.append(_data(chunk(cid, model, created, {"content": e.text}, usage=include_usage)))
                elif not isinstance(e, TerminalEvent):
                    delta = _tool_delta(e, unnamed)
                    if delta is not None:
                        out.append(_data(chunk(cid, model, created, delta, usage=include_usage)))
                elif e.error is None:
                    reason = "tool_calls" if run.tool_calls else finish_reason(run.finish_reason)
                    out.append(_data(chunk(cid, model, created, {}, reason, usage=include_usage)))
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


def _tool_delta(event: RunEvent, unnamed: set[int]) -> dict[str, Any] | None:
    """A tool event as OpenAI streams it: the id, type and name on a call's first chunk, then argument
    fragments (an id the provider sent late goes out when the call is done); None for what Chat Completions
    does not show (the result of a tool the server ran)."""
    if isinstance(event, ToolCallStartedEvent):
        if event.call_id is None:
            unnamed.add(event.index)
        return tool_call_delta(event.index, call_id=event.call_id, name=event.name, arguments="")
    if isinstance(event, ToolArgumentsEvent):
        return tool_call_delta(event.index, arguments=event.text)
    if isinstance(event, ToolCallDoneEvent) and event.index in unnamed:
        unnamed.discard(event.index)
        return tool_call_delta(event.index, call_id=event.call_id)
    return None


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
