"""The Responses API (OpenAI's ``/v1/responses``) as a view of runs: a response is a run, its id the run's id
(``resp_<uuid hex>``, also its reply message's id), its input the run's user message(s), its output the reply
row, its usage the api-call row. With ``previous_response_id`` or ``conversation`` the turn continues that
session, and the agent reads its context from the database through the session's window, as every turn does.

Event numbering: ``sequence_number`` 0-3 are the prologue (created, in_progress, output_item.added,
content_part.added), delta *n* of the run log is ``3 + n``, and the run's terminal event *T* opens the four
closing events ``3 + T`` … ``6 + T`` (and one ``response.output_item.done`` per function call before the last).
So ``starting_after=S`` resumes the run log after event ``S - 3``. A function call of the run log (started,
argument fragments, done) is one event each: ``output_item.added``, ``function_call_arguments.delta`` and
``.done`` (``_tool_items``); function tools are the client's: a response making calls ends with them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ....entities import Session
from ....errors import NotFoundError, SessionBusyError
from ....ids import uuid7
from ....llm import ChatMessage
from ....persistence import KEEP, SettingsRequest, TurnOptions
from ...http import KEEPALIVE, ApiError, Registry, SSEResponse, Who, sse
from ...runs import (
    FINAL_STATUSES,
    Principal,
    Run,
    RunError,
    RunEvent,
    RunRegistry,
    TerminalEvent,
    TextDeltaEvent,
    cancel_run,
    find_call,
    follow_local,
    open_follower,
    owner_answers,
)
from ._common import conversation_of, list_page, reply_row
from ._request_fields import provider_fields, request_fields
from ._response_object import spec_fields
from ._shapes import decode_id, encode_id, response_obj
from ._threading import thread_request
from ._tool_items import call_item, call_items, input_messages, items_of_row, tool_choice, tool_event, tool_specs
from .schemas import ResponseCreate

__all__ = ["previous_not_found", "request_meta", "response_events", "router", "start_response"]

router = APIRouter(tags=["openai: responses"])
PROLOGUE = 3  # sequence numbers 0..3 come before the run log's first event
DONE = b"data: [DONE]\n\n"
#: function calls whose closing events a resume within the closing events still finds
_CALLS_CLOSED = 64


def _not_found(raw: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"response {raw[:80]!r} not found", param=param)


def previous_not_found(raw: str) -> ApiError:
    """The 404 of a ``previous_response_id`` that names no response this key may continue."""
    return ApiError(404, f"previous response {raw[:80]!r} not found", "previous_response_not_found",
                    param="previous_response_id")


async def _session_for(registry: RunRegistry, who: Principal, body: ResponseCreate) -> Session | None:
    """The session the turn runs on, read once with the owner check; None: a new one (the turn engine writes
    it with the user message)."""
    if body.conversation is not None:
        return await conversation_of(registry.store, who, body.conversation)
    prev = body.previous_response_id
    if prev:
        try:
            rid = decode_id("resp", prev, "response")
        except ApiError:
            raise previous_not_found(prev) from None
        row = await reply_row(registry.store, who, rid)
        if row is None:
            raise previous_not_found(prev)
        found = await registry.store.get_session(who.tenant_id, row.session_id)
        if found is None or found.user_id != who.user_id:
            raise previous_not_found(prev)
        return found
    return None


@router.post("/v1/responses", summary="Create a response: one run (streamed, waited for, or in the background)")
async def create_response(body: ResponseCreate, registry: Registry, who: Who) -> Any:
    run = await start_response(registry, who, body)
    if body.stream:
        return SSEResponse(_stream(registry, who, run.id, follow_local(run, 0, registry.config), -1))
    if not body.background:
        await run.wait_finished()
    return await _response(registry, who, run.id, encode_id("resp", run.id))


async def start_response(registry: RunRegistry, who: Principal, body: ResponseCreate) -> Run:
    """Start the run of a response (returns once its user message is saved; raises with nothing written)."""
    earlier_items, user_text, user_parts = body.turn()
    specs = tool_specs(body.tools)
    choice = tool_choice(body.tool_choice, specs, body.max_tool_calls)
    parallel = False if body.max_tool_calls == 1 else body.parallel_tool_calls
    session: Session | uuid.UUID | None = await _session_for(registry, who, body)
    given = input_messages(earlier_items)
    if session is None and given and registry.config.thread_history:
        # an input list that resends a stored conversation continues it (see _threading); only what is new is saved
        sent = [*given, *([ChatMessage(role="user", content="", parts=user_parts) if user_parts
                           else ChatMessage(role="user", content=user_text)] if user_text is not None else [])]
        threaded = await thread_request(registry.store, who, sent, None)
        if threaded is not None and threaded.session_id is not None:
            # what is new is a tail of what was sent: the items before the last that the session lacks
            session, given = threaded.session_id, given[len(sent) - len(threaded.new):]
    model = body.model
    # ``model`` names an agent row of the tenant, else the model of the session's agent (or default provider)
    agent = None if model is None else await registry.store.get_agent_by_code_and_tenant(who.tenant_id, model)
    asked = SettingsRequest(agent=model) if agent is not None else SettingsRequest(model=model or KEEP)
    # items before the last: rows of the session before the user message, written with it (ids known now)
    earlier = [replace(m, id=uuid7()) for m in given]
    # the request parameters, saved with the (last) user message in its insert; its own id is not in
    # input_ids (it is not known yet): _meta adds it
    meta = {"created_at": int(time.time()), "model": model or "", "instructions": body.instructions,
            "previous_response_id": body.previous_response_id, "conversation": body.conversation is not None,
            "metadata": body.metadata or {}, "temperature": body.temperature,
            "max_output_tokens": body.max_output_tokens, "background": bool(body.background),
            "input_ids": [str(m.id) for m in earlier], **request_fields(body, agent),
            "tools": body.tools or [], "tool_choice": body.tool_choice,
            "parallel_tool_calls": True if parallel is None else parallel}
    # instructions, temperature, the reply cap and the sampling fields are this response's own: not recorded
    # on the session
    options = TurnOptions(temperature=body.temperature, max_tokens=body.max_output_tokens,
                          system_prompt=body.instructions, earlier=earlier, request_params=meta,
                          extra=provider_fields(body) or None, user_parts=user_parts, tools=specs,
                          tool_choice=choice,
                          parallel_tool_calls=parallel)
    return await registry.start_run(who, session, user_text, asked, options)


def _with_own_id(params: dict[str, Any] | None, user_message_id: uuid.UUID | None) -> dict[str, Any]:
    found = dict(params) if params is not None else {}
    ids = found.get("input_ids")
    if isinstance(ids, list) and str(user_message_id) not in ids:  # rows saved before 0008 list it already
        found["input_ids"] = [*ids, str(user_message_id)]
    return found


def _run_meta(run: Run) -> dict[str, Any]:
    """A live run's request parameters: the run holds them (nothing is read)."""
    return _with_own_id(run.request_params, run.user_message_id)


async def request_meta(registry: RunRegistry, who: Principal, rid: uuid.UUID) -> dict[str, Any] | None:
    """The request parameters of response ``rid`` (live or finished); None when no such response is this
    key's."""
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who):
        return _run_meta(run)
    row = await reply_row(registry.store, who, rid)
    return None if row is None else await _meta(registry, who, row.parent_message_id)


async def _meta(registry: RunRegistry, who: Principal, user_message_id: uuid.UUID | None) -> dict[str, Any]:
    """A finished response's request parameters, from its user message."""
    if user_message_id is None:
        return {}
    row = await registry.store.get_message(who.tenant_id, user_message_id)
    return _with_own_id(row.request_params if row is not None else None, user_message_id)


async def _response(registry: RunRegistry, who: Principal, rid: uuid.UUID, raw: str,
                    force_status: str | None = None) -> dict[str, Any]:
    """The Response object of run ``rid`` as it stands: from the live run, else from its rows."""
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who):
        meta = _run_meta(run)
        t = run.terminal
        calls = [call_item(rid, i, c.id, c.name, c.arguments, "completed") for i, c in enumerate(run.tool_calls)]
        obj = response_obj(rid, status=force_status or run.status, text=run.text,
                           created_at=meta.get("created_at", 0), meta=meta, session_id=run.session_id,
                           model=run.model, calls=calls,
                           usage=t.usage if t is not None else None, error=t.error if t is not None else None)
        return {**obj, **spec_fields(meta, obj["status"], int(time.time()) if t is not None else None)}
    row = await reply_row(registry.store, who, rid)
    if row is None or run is not None:
        raise _not_found(raw)
    status = row.status
    if status in ("streaming", "interrupted"):
        status = "streaming" if await owner_answers(registry, who, rid) else "interrupted"
    call = await find_call(registry.store, row) if row.status in FINAL_STATUSES else None
    meta = await _meta(registry, who, row.parent_message_id)
    obj = response_obj(rid, status=force_status or status, text=row.content,
                       created_at=meta.get("created_at", int(row.create_time.timestamp())), meta=meta,
                       session_id=row.session_id, call=call, calls=call_items(row),
                       error=RunError("error", call.error_message or "") if call else None)
    return {**obj, **spec_fields(meta, obj["status"], int(row.update_time.timestamp()))}


def _ev(kind: str, seq: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": seq, **fields}


async def response_events(registry: RunRegistry, who: Principal, rid: uuid.UUID,
                          events: AsyncIterator[list[RunEvent]], after: int
                          ) -> AsyncGenerator[list[dict[str, Any]] | None, None]:
    """The run's log as batches of Responses events, those with a sequence number above ``after``; None for
    a quiet interval (a keepalive). It ends after the terminal event (SSE and WebSocket frame it each their
    way)."""
    item_id = encode_id("msg", rid)
    raw = encode_id("resp", rid)
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
            yield head[after + 1:]
        async for batch in events:
            if not batch:
                yield None
                continue
            out = []
            for e in batch:
                seq = PROLOGUE + e.n
                if isinstance(e, TextDeltaEvent):
                    if seq > after:
                        out.append(_ev("response.output_text.delta", seq, delta=e.text, logprobs=[], **where))
                    continue
                if not isinstance(e, TerminalEvent):
                    shown = tool_event(e, rid)
                    if shown is not None and seq > after:
                        out.append(_ev(shown[0], seq, **shown[1]))
                    continue
                final = await _response(registry, who, rid, raw)
                message = next((o for o in final["output"] if o["type"] == "message"), None)
                text = message["content"][0]["text"] if message is not None else ""
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
                    *(("response.output_item.done", {"output_index": 1 + i, "item": c})
                      for i, c in enumerate(o for o in final["output"] if o["type"] == "function_call")),
                    (end, {"response": final})]
                out += [_ev(k, seq + i, **f) for i, (k, f) in enumerate(closing) if seq + i > after]
            if out:
                yield out
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def _stream(registry: RunRegistry, who: Principal, rid: uuid.UUID, events: AsyncIterator[list[RunEvent]],
                  after: int) -> AsyncGenerator[bytes, None]:
    """The events as SSE, and ``data: [DONE]`` once the response has ended (the official clients stop on it)."""
    source = response_events(registry, who, rid, events, after)
    try:
        async for batch in source:
            if batch is None:
                yield KEEPALIVE
            elif batch:
                yield b"".join(sse(e["type"], e, e["sequence_number"]) for e in batch)
        yield DONE
    finally:
        await source.aclose()


def _rid(raw: str) -> uuid.UUID:
    return decode_id("resp", raw, "response")


@router.get("/v1/responses/{response_id}", summary="A response; with stream=true its events (after starting_after)")
async def get_response(
    response_id: str, registry: Registry, who: Who, stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1, le=10**9)] = None,
) -> Any:
    rid = _rid(response_id)
    if not stream:
        return await _response(registry, who, rid, response_id)
    after = -1 if starting_after is None else starting_after
    try:
        # from three events earlier: a resume inside the closing events still gets the terminal one (those at or
        # before ``after`` are not sent)
        events = await open_follower(registry, who, rid, max(0, after - PROLOGUE - 3 - _CALLS_CLOSED))
    except NotFoundError as exc:
        raise _not_found(response_id) from exc
    return SSEResponse(_stream(registry, who, rid, events, after))


@router.post("/v1/responses/{response_id}/cancel", summary="Stop a response: its partial output is kept")
async def cancel_response(response_id: str, registry: Registry, who: Who) -> Any:
    rid = _rid(response_id)
    if await cancel_run(registry, who, rid) is None:
        raise _not_found(response_id)
    return await _response(registry, who, rid, response_id)


@router.delete("/v1/responses/{response_id}", summary="Delete a response: its input and output messages")
async def delete_response(response_id: str, registry: Registry, who: Who) -> Any:
    rid = _rid(response_id)
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who) and run.terminal is None:
        raise SessionBusyError(f"response {response_id[:80]!r} is in progress; cancel it first")
    row = await reply_row(registry.store, who, rid)
    if row is None:
        raise _not_found(response_id)
    if row.status == "streaming":
        raise SessionBusyError(f"response {response_id[:80]!r} is in progress; cancel it first")
    ids = [uuid.UUID(i) for i in (await _meta(registry, who, row.parent_message_id)).get("input_ids", [])]
    if not ids and row.parent_message_id is not None:
        ids = [row.parent_message_id]
    try:
        # never while a turn of any process holds the session
        async with registry.holding(who, row.session_id), registry.store.transaction() as tx:
            for mid in [*ids, row.id]:
                await registry.store.delete_message(who.tenant_id, mid, tx=tx)
    except SessionBusyError:
        raise SessionBusyError(f"response {response_id[:80]!r} is in progress; cancel it first") from None
    registry.runs.pop(rid, None)  # a finished run kept for late followers is gone with its rows
    return {"id": encode_id("resp", rid), "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items", summary="The input items (user messages) of a response")
async def input_items(response_id: str, registry: Registry, who: Who,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20,
                      order: Annotated[Literal["asc", "desc"], Query()] = "desc", after: str | None = None) -> Any:
    rid = _rid(response_id)
    run = registry.runs.get(rid)
    if run is not None and run.owned_by(who):
        user_id = run.user_message_id
        ids = _run_meta(run).get("input_ids")
    else:
        row = await reply_row(registry.store, who, rid)
        if row is None:
            raise _not_found(response_id)
        user_id = row.parent_message_id
        ids = (await _meta(registry, who, user_id)).get("input_ids")
    ids = ids or ([str(user_id)] if user_id else [])
    rows = [m for m in [await registry.store.get_message(who.tenant_id, uuid.UUID(i)) for i in ids] if m is not None]
    if order == "desc":
        rows.reverse()
    if after is not None:
        target = decode_id("msg", after, "item")
        at = next((i for i, m in enumerate(rows) if m.id == target), None)
        rows = rows[at + 1:] if at is not None else []
    return list_page([i for m in rows[:limit] for i in items_of_row(m)], len(rows) > limit)

