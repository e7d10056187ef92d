"""The Responses API (OpenAI's ``/v1/responses``) as a view of runs: a response is a run, its id the run's id
(``resp_<uuid hex>``, also its reply message's id), its input the run's user message(s), its output the reply
row, its usage the api-call row. With ``previous_response_id`` or ``conversation`` the turn continues that
session, and the agent reads its context from the database through the session's window, as every turn does.

Event numbering: ``sequence_number`` 0-3 are the prologue (created, in_progress, output_item.added,
content_part.added), delta *n* of the run log is ``3 + n``, and the run's terminal event *T* opens the four
closing events ``3 + T`` … ``6 + T``. So ``starting_after=S`` resumes the run log after event ``S - 3``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from ..entities import Message, Session
from ..errors import SessionBusyError
from ..llm import LLMAgentBuilder
from ._auth import principal
from ._errors import ApiError
from ._follow import follow_local, open_follower, owner_answers
from ._log import FINAL_STATUSES, Event, find_call
from ._responses_shapes import decode_id, encode_id, input_messages, item_obj, response_obj
from ._routes_conversations import conversation_of, json_body, list_page, string_metadata
from ._routes_runs import registry_of
from ._runs import Principal, RunRegistry, cancel_run
from ._sse import KEEPALIVE, SSEResponse, sse

__all__ = ["router"]

router = APIRouter(tags=["openai: responses"])
Who = Annotated[Principal, Depends(principal)]
_ACCEPTED = {"input", "instructions", "model", "stream", "store", "previous_response_id", "conversation",
             "metadata", "max_output_tokens", "temperature", "background"}
#: accepted and ignored (documented in docs/openai-compatibility.md)
_IGNORED = {"top_p", "user", "truncation", "parallel_tool_calls", "include", "prompt_cache_key",
            "safety_identifier", "service_tier", "stream_options", "reasoning", "text", "tool_choice", "tools"}
PROLOGUE = 3  # sequence numbers 0..3 come before the run log's first event


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param=param)


def _check(body: dict[str, Any]) -> None:
    unknown = set(body) - _ACCEPTED - _IGNORED
    if unknown:
        name = sorted(unknown)[0]
        raise _bad(f"unknown or unsupported parameter {name!r}", name, "unknown_parameter")
    if body.get("tools"):
        raise _bad("tools are not supported by mofa serve", "tools")
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if fmt not in (None, {"type": "text"}):
        raise _bad("only text output is supported (text.format type text)", "text.format")
    for name, kind in (("instructions", str), ("model", str), ("previous_response_id", str)):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise _bad(f"{name} must be a string", name, "invalid_type")
    for name in ("stream", "store", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise _bad(f"{name} must be a boolean", name, "invalid_type")
    t = body.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 2):
        raise _bad("temperature must be a number from 0 to 2", "temperature")
    m = body.get("max_output_tokens")
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise _bad("max_output_tokens must be a positive integer", "max_output_tokens")
    if body.get("previous_response_id") and body.get("conversation"):
        raise _bad("previous_response_id and conversation cannot both be given", "previous_response_id")
    if "input" not in body:
        raise _bad("input is required", "input", "missing_required_parameter")


async def _reply_row(registry: RunRegistry, who: Principal, rid: uuid.UUID) -> Message | None:
    row = await registry.store.get_message(who.tenant_id, rid)
    if row is None or row.role != "assistant" or row.user_id != who.user_id:
        return None
    return row


def _not_found(raw: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"response {raw[:80]!r} not found", param=param)


async def _session_for(registry: RunRegistry, who: Principal, body: dict[str, Any]) -> tuple[Session, bool]:
    """The session the turn runs on, and whether this request creates it."""
    conv = body.get("conversation")
    if conv is not None:
        raw = conv.get("id") if isinstance(conv, dict) else conv
        if not isinstance(raw, str):
            raise _bad("conversation must be an id or {\"id\": ...}", "conversation", "invalid_type")
        return await conversation_of(registry, who, raw), False
    prev = body.get("previous_response_id")
    if prev:
        row = await _reply_row(registry, who, decode_id("resp", prev, "response"))
        if row is None:
            raise _not_found(prev, "previous_response_id")
        found = await registry.store.get_session(who.tenant_id, row.session_id)
        if found is None:
            raise _not_found(prev, "previous_response_id")
        return found, False
    return Session(tenant_id=who.tenant_id, user_id=who.user_id, title=None), True


@router.post("/v1/responses", summary="Create a response: one run (streamed, waited for, or in the background)")
async def create_response(request: Request, who: Who) -> Any:
    registry = registry_of(request)
    store = registry.store
    body = await json_body(request)
    _check(body)
    pairs = input_messages(body["input"])
    if pairs[-1][0] != "user" or not pairs[-1][1].strip():
        raise _bad("the last input item must be a user message with text", "input")
    metadata = string_metadata(body.get("metadata"))
    session, new = await _session_for(registry, who, body)
    model = body.get("model")
    agent_code = None
    if model and await store.get_agent_by_code_and_tenant(who.tenant_id, model) is not None:
        agent_code = model

    def configure(builder: LLMAgentBuilder) -> None:
        if model and agent_code is None:
            builder.with_model(model)
        if body.get("instructions") is not None:
            builder.with_system_prompt(body["instructions"])
        if body.get("temperature") is not None:
            builder.with_temperature(float(body["temperature"]))
        if body.get("max_output_tokens") is not None:
            builder.with_max_tokens(body["max_output_tokens"])

    if not new and any(r.session_id == session.id and r.terminal is None for r in registry.runs.values()):
        raise SessionBusyError("the conversation has a response in progress")
    earlier = [Message(session_id=session.id, tenant_id=who.tenant_id, user_id=who.user_id,
                       role=role, content=text) for role, text in pairs[:-1]]  # type: ignore[arg-type]
    if new:
        session = await store.create_session(session)
    saved: list[Message] = []
    try:
        if earlier:  # items before the last: ordinary rows of the session, before the turn reads its window
            saved = await store.save_messages(earlier)
        # the request parameters, saved with the (last) user message in its insert; its own id is not in
        # input_ids (it is not known yet): _meta adds it
        meta = {"created_at": int(time.time()), "model": model or "", "instructions": body.get("instructions"),
                "previous_response_id": body.get("previous_response_id"), "conversation": not new and
                body.get("conversation") is not None, "metadata": metadata, "temperature": body.get("temperature"),
                "max_output_tokens": body.get("max_output_tokens"), "background": bool(body.get("background")),
                "input_ids": [str(m.id) for m in saved]}
        run = await registry.start_run(who, session, pairs[-1][1], agent_code, configure=configure,
                                       request_params=meta)
    except BaseException:
        # nothing of a refused request stays written
        if new:
            await store.delete_session(who.tenant_id, session.id)
        else:
            for m in saved:
                await store.delete_message(who.tenant_id, m.id)
        raise
    if body.get("stream"):
        return SSEResponse(_stream(registry, who, run.id, follow_local(run, 0, registry.config), -1))
    if not body.get("background"):
        await run.wait_finished()
    return await _response(registry, who, run.id, encode_id("resp", run.id))


async def _meta(registry: RunRegistry, who: Principal, user_message_id: uuid.UUID | None) -> dict[str, Any]:
    """The request parameters saved with a response's (last) user message."""
    if user_message_id is None:
        return {}
    row = await registry.store.get_message(who.tenant_id, user_message_id)
    found = dict(row.request_params) if row is not None and row.request_params is not None else {}
    ids = found.get("input_ids")
    if isinstance(ids, list) and str(user_message_id) not in ids:  # rows saved before 0008 list it already
        found["input_ids"] = [*ids, str(user_message_id)]
    return found


async def _response(registry: RunRegistry, who: Principal, rid: uuid.UUID, raw: str,
                    force_status: str | None = None) -> dict[str, Any]:
    """The Response object of run ``rid`` as it stands: from the live run, else from its rows."""
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who):
        meta = await _meta(registry, who, run.user_message_id)
        data = run.terminal.data if run.terminal is not None else {}
        return response_obj(rid, status=force_status or run.status, text="".join(run.parts),
                            created_at=meta.get("created_at", 0), meta=meta, session_id=run.session_id,
                            usage=data.get("usage"), error=data.get("error"))
    row = await _reply_row(registry, who, rid)
    if row is None or run is not None:
        raise _not_found(raw)
    status = row.status
    if status in ("streaming", "interrupted"):
        status = "streaming" if await owner_answers(registry, who, rid) else "interrupted"
    call = await find_call(registry.store, row) if row.status in FINAL_STATUSES else None
    meta = await _meta(registry, who, row.parent_message_id)
    return response_obj(rid, status=force_status or status, text=row.content,
                        created_at=meta.get("created_at", int(row.create_time.timestamp())), meta=meta,
                        session_id=row.session_id, call=call, error={"message": call.error_message} if call else None)


def _ev(kind: str, seq: int, **fields: Any) -> bytes:
    return sse(kind, {"type": kind, "sequence_number": seq, **fields}, seq)


async def _stream(registry: RunRegistry, who: Principal, rid: uuid.UUID, events: AsyncIterator[list[Event]],
                  after: int) -> AsyncGenerator[bytes, None]:
    """The run's log rendered as Responses events, those with a sequence number above ``after``."""
    raw, item_id = encode_id("resp", rid), encode_id("msg", rid)
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    try:
        if after < PROLOGUE:
            snap = await _response(registry, who, rid, raw, force_status="streaming")
            snap["output"] = []
            item: dict[str, Any] = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress",
                                    "content": []}
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
            head = [_ev("response.created", 0, response=snap), _ev("response.in_progress", 1, response=snap),
                    _ev("response.output_item.added", 2, output_index=0, item=item),
                    _ev("response.content_part.added", 3, part=part, **where)]
            yield b"".join(head[after + 1:])
        async for batch in events:
            if not batch:
                yield KEEPALIVE
                continue
            out = []
            for e in batch:
                seq = PROLOGUE + e.n
                if not e.terminal:
                    if seq > after:
                        out.append(_ev("response.output_text.delta", seq, delta=e.data["text"], logprobs=[],
                                       **where))
                    continue
                final = await _response(registry, who, rid, raw)
                text = final["output"][0]["content"][0]["text"] if final["output"] else ""
                part = {"type": "output_text", "text": text, "annotations": []}
                item = {"id": item_id, "type": "message", "role": "assistant",
                        "status": "completed" if final["status"] == "completed" else "incomplete",
                        "content": [part]}
                end = {"completed": "response.completed", "failed": "response.failed"}.get(
                    final["status"], "response.incomplete")
                closing: list[tuple[str, dict[str, Any]]] = [
                    ("response.output_text.done", {"text": text, "logprobs": [], **where}),
                    ("response.content_part.done", {"part": part, **where}),
                           ("response.output_item.done", {"output_index": 0, "item": item}),
                           (end, {"response": final})]
                out += [_ev(k, seq + i, **f) for i, (k, f) in enumerate(closing) if seq + i > after]
            if out:
                yield b"".join(out)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _rid(raw: str) -> uuid.UUID:
    return decode_id("resp", raw, "response")


@router.get("/v1/responses/{response_id}", summary="A response; with stream=true its events (after starting_after)")
async def get_response(
    response_id: str, request: Request, who: Who, stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1, le=10**9)] = None,
) -> Any:
    registry = registry_of(request)
    rid = _rid(response_id)
    if not stream:
        return await _response(registry, who, rid, response_id)
    after = -1 if starting_after is None else starting_after
    try:
        # from three events earlier: a resume inside the closing events still gets the terminal one (those at or
        # before ``after`` are not sent)
        events = await open_follower(registry, who, rid, max(0, after - PROLOGUE - 3))
    except ApiError as exc:
        raise _not_found(response_id) from exc
    return SSEResponse(_stream(registry, who, rid, events, after))


@router.post("/v1/responses/{response_id}/cancel", summary="Stop a response: its partial output is kept")
async def cancel_response(response_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    rid = _rid(response_id)
    if await cancel_run(registry, who, rid) is None:
        raise _not_found(response_id)
    return await _response(registry, who, rid, response_id)


@router.delete("/v1/responses/{response_id}", summary="Delete a response: its input and output messages")
async def delete_response(response_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    rid = _rid(response_id)
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who) and run.terminal is None:
        raise SessionBusyError(f"response {response_id[:80]!r} is in progress; cancel it first")
    row = await _reply_row(registry, who, rid)
    if row is None:
        raise _not_found(response_id)
    if row.status == "streaming":
        raise SessionBusyError(f"response {response_id[:80]!r} is in progress; cancel it first")
    ids = [uuid.UUID(i) for i in (await _meta(registry, who, row.parent_message_id)).get("input_ids", [])]
    if not ids and row.parent_message_id is not None:
        ids = [row.parent_message_id]
    async with registry.store.transaction() as tx:
        for mid in [*ids, row.id]:
            await registry.store.delete_message(who.tenant_id, mid, tx=tx)
    registry.runs.pop(rid, None)  # a finished run kept for late followers is gone with its rows
    return {"id": encode_id("resp", rid), "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items", summary="The input items (user messages) of a response")
async def input_items(response_id: str, request: Request, who: Who,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      order: Annotated[Literal["asc", "desc"], Query()] = "desc", after: str | None = None) -> Any:
    registry = registry_of(request)
    rid = _rid(response_id)
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who):
        user_id = run.user_message_id
    else:
        row = await _reply_row(registry, who, rid)
        if row is None:
            raise _not_found(response_id)
        user_id = row.parent_message_id
    ids = (await _meta(registry, who, user_id)).get("input_ids") or ([str(user_id)] if user_id else [])
    rows = [m for m in [await registry.store.get_message(who.tenant_id, uuid.UUID(i)) for i in ids] if m is not None]
    if order == "desc":
        rows.reverse()
    if after is not None:
        target = decode_id("msg", after, "item")
        at = next((i for i, m in enumerate(rows) if m.id == target), None)
        rows = rows[at + 1:] if at is not None else []
    return list_page([item_obj(m) for m in rows[:limit]], len(rows) > limit)

