"""The native API: sessions and their messages, runs (start a turn, follow its events, read it, stop it),
usage, agents and health. Everything is scoped by the key's tenant and user: another tenant's (or user's)
session or run answers 404, exactly like a missing one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from ....entities import QueryFilter, Session, UsageStatistics
from ....errors import MofaError, SessionBusyError
from ....persistence import MAX_PAGE as MAX_PAGE_SIZE
from ....persistence import Cursor, SessionReader, SettingsRequest, owned_session
from ...http import KEEPALIVE, ApiError, Registry, SSEResponse, StoreDep, Who, event_frame, sse
from ...runs import (
    FINAL_STATUSES,
    Principal,
    Run,
    RunEvent,
    cancel_run,
    delta_count,
    follow_local,
    open_follower,
    owner_answers,
    terminal_of_row,
)
from ._daily import usage_daily
from .schemas import AgentOut, MessageIn, MessageOut, Page, RunOut, SessionIn, SessionOut, SessionPatch, UsageDaily

__all__ = ["router"]

router = APIRouter()
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


# -- runs -----------------------------------------------------------------------------------------------
_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The run's events as server-sent events."}
}


async def _session_of(store: SessionReader, who: Principal, session_id: uuid.UUID) -> Session:
    found = await owned_session(store, who.tenant_id, who.user_id, session_id)
    if found is None:
        raise ApiError(404, f"session {session_id} not found")
    return found


async def _frames(events: AsyncIterator[list[RunEvent]], first: bytes | None = None) -> AsyncGenerator[bytes, None]:
    try:
        if first is not None:
            yield first
        async for batch in events:
            yield b"".join(event_frame(e) for e in batch) if batch else KEEPALIVE
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _run_out(run: Run) -> RunOut:
    t = run.terminal
    ids = {"user": run.user_message_id, "assistant": run.id if run.parts else None}
    return RunOut(id=run.id, session_id=run.session_id, status=run.status, content="".join(run.parts),
                  message_ids=ids, usage=t.usage if t is not None else None, error=t.error if t is not None else None,
                  events=t.n if t is not None else len(run.parts))


@router.post(
    "/v1/sessions/{session_id}/messages", tags=["runs"],
    responses={**_SSE_DOC, 404: {"description": "No such session"}, 409: {"description": "A reply is streaming"}},
    response_model=RunOut,
    summary="Send a message: start a run, and stream its events or wait for the reply",
)
async def post_message(session_id: uuid.UUID, body: MessageIn, registry: Registry, who: Who) -> Any:
    session = await _session_of(registry.store, who, session_id)
    asked = SettingsRequest() if body.agent is None else SettingsRequest(agent=body.agent)
    run = await registry.start_run(who, session, body.content, asked)
    headers = {"mofa-run-id": str(run.id), "location": f"/v1/runs/{run.id}"}
    if body.stream:
        start = sse("run", {"run_id": str(run.id), "session_id": str(run.session_id),
                            "user_message_id": str(run.user_message_id)})
        return SSEResponse(
            _frames(follow_local(run, 0, registry.config), start),
            headers=headers,
            on_disconnect=run.cancel if body.on_disconnect == "cancel" else None,
        )
    await run.wait_finished()
    out = _run_out(run)
    status = 502 if out.error is not None else 200
    return JSONResponse(out.model_dump(mode="json"), status_code=status, headers=headers)


def _after(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isdigit() or len(value) > 12:
            raise ApiError(400, f"Last-Event-ID must be an event number (an integer >= 0), got {value[:40]!r}")
        return int(value)
    return after or 0


@router.get("/v1/runs/{run_id}/events", tags=["runs"], responses={**_SSE_DOC, 404: {"description": "No such run"}},
            summary="Follow a run: replay the events after Last-Event-ID (or ?after=N), then live to its end")
async def run_events(
    run_id: uuid.UUID,
    registry: Registry,
    who: Who,
    after: Annotated[int | None, Query(ge=0, le=10**9, description="Replay the events after this number.")] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^\s*\d{0,12}\s*$", description="The last event seen.")
    ] = None,
) -> Any:
    events = await open_follower(registry, who, run_id, _after(last_event_id, after))
    return SSEResponse(_frames(events), headers={"mofa-run-id": str(run_id)})


@router.get("/v1/runs/{run_id}", tags=["runs"], response_model=RunOut, responses={404: {"description": "No such run"}},
            summary="A run's status and its reply so far")
async def get_run(run_id: uuid.UUID, registry: Registry, who: Who) -> Any:
    run = registry.runs.get(run_id)
    if run is not None and run.owned_by(who):
        return _run_out(run)
    row = await registry.store.get_message(who.tenant_id, run_id)
    if row is None or row.role != "assistant" or row.user_id != who.user_id or run is not None:
        raise ApiError(404, f"run {run_id} not found")
    status = row.status
    end = None
    if status in FINAL_STATUSES:  # its usage and failure, as the live run told them, from its api-call row
        end = await terminal_of_row(registry.store, row)
    elif status in ("streaming", "interrupted"):
        # the row cannot tell a live owner whose provider is silent from a dead one: ask the owner
        status = "streaming" if await owner_answers(registry, who, run_id) else "interrupted"
    return RunOut(id=row.id, session_id=row.session_id, status=status, content=row.content,
                  message_ids={"user": row.parent_message_id, "assistant": row.id}, events=delta_count(row),
                  usage=end.usage if end is not None else None, error=end.error if end is not None else None)


@router.post("/v1/runs/{run_id}/cancel", tags=["runs"], responses={404: {"description": "No such run"}},
             summary="Stop a run (from any process): its reply is saved as cancelled")
async def cancel(run_id: uuid.UUID, registry: Registry, who: Who) -> Any:
    result = await cancel_run(registry, who, run_id)
    if result is None:
        raise ApiError(404, f"run {run_id} not found")
    status, stopped = result
    return {"id": str(run_id), "status": status, "cancelled": stopped}


# -- sessions -------------------------------------------------------------------------------------------
def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"data": items, "offset": offset, "limit": limit,
            "next_offset": offset + len(items) if len(items) == limit else None}


@router.post("/v1/sessions", tags=["sessions"], status_code=201, response_model=SessionOut, summary="Create a session")
async def create_session(body: SessionIn, store: StoreDep, who: Who) -> Any:
    fields: dict[str, Any] = {"tenant_id": who.tenant_id, "user_id": who.user_id, "title": body.title,
                              "metadata": body.metadata}
    if body.id is not None:
        fields["id"] = body.id
        if await store.get_session(who.tenant_id, body.id) is not None:
            raise ApiError(409, f"session {body.id} exists already")
    created = await store.create_session(Session(**fields))
    return SessionOut.of(created)


@router.get("/v1/sessions", tags=["sessions"], response_model=Page[SessionOut],
            summary="This user's sessions, most recent first")
async def list_sessions(
    store: StoreDep, who: Who, offset: Offset = 0, limit: Limit = 50,
    cursor: Annotated[str | None, Query(max_length=200, description=(
        "The next page: a previous page's next_cursor (costs what the first page does). `offset` is kept for "
        "compatibility and walks every row before it (O(offset))."))] = None,
) -> Any:  # fmt: skip
    if cursor is not None and offset:
        raise ApiError(400, "give either cursor or offset, not both")
    if offset:
        found = await store.get_user_sessions(who.tenant_id, who.user_id, offset=offset, limit=limit)
        nxt = Cursor(found[-1].update_time, found[-1].id) if len(found) == limit else None
    else:
        after = None if cursor is None else Cursor.parse(cursor)
        page = await store.list_user_sessions(who.tenant_id, who.user_id, after=after, limit=limit)
        found, nxt = page.items, page.next
    counts = [await store.count_session_messages(who.tenant_id, s.id) for s in found]  # the page's sidebar shows them
    out = _page([SessionOut.of(s, count) for s, count in zip(found, counts, strict=True)], offset, limit)
    if cursor is not None:  # a keyset page has no offset to continue from
        out["next_offset"] = None
    out["next_cursor"] = None if nxt is None else nxt.token()
    return out


@router.get("/v1/sessions/{session_id}", tags=["sessions"], response_model=SessionOut,
            responses={404: {"description": "Not found"}})
async def get_session(session_id: uuid.UUID, store: StoreDep, who: Who) -> Any:
    return SessionOut.of(await _session_of(store, who, session_id))


@router.patch("/v1/sessions/{session_id}", tags=["sessions"], response_model=SessionOut,
              responses={404: {"description": "Not found"}},
              summary="Rename a session")
async def rename_session(session_id: uuid.UUID, body: SessionPatch, store: StoreDep, who: Who) -> Any:
    await _session_of(store, who, session_id)
    return SessionOut.of(await store.update_session(who.tenant_id, session_id, title=body.title))


@router.delete("/v1/sessions/{session_id}", tags=["sessions"], status_code=204,
               responses={404: {"description": "Not found"}},
               summary="Delete a session, its messages and its api-call records")
async def delete_session(session_id: uuid.UUID, registry: Registry, who: Who) -> Response:
    await _session_of(registry.store, who, session_id)
    try:
        async with registry.holding(who, session_id):  # refused while a turn of any process holds it
            await registry.store.delete_session(who.tenant_id, session_id)
    except SessionBusyError:
        raise SessionBusyError(f"session {session_id} has a reply streaming; cancel its run first") from None
    return Response(status_code=204)


@router.get("/v1/sessions/{session_id}/messages", tags=["sessions"], response_model=Page[MessageOut],
            responses={404: {"description": "Not found"}}, summary="A session's messages by seq, statuses shown")
async def list_messages(
    session_id: uuid.UUID, store: StoreDep, who: Who, offset: Offset = 0, limit: Limit = 100,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62, description=(
        "The next page: the messages after this seq (a previous page's next_after_seq); `offset` walks every "
        "message before it (O(offset))."))] = None,
) -> Any:  # fmt: skip
    await _session_of(store, who, session_id)
    if after_seq is not None and offset:
        raise ApiError(400, "give either after_seq or offset, not both")
    if after_seq is None:
        found = await store.get_session_messages_paginated(who.tenant_id, session_id, offset, limit)
    else:
        found = await store.get_session_messages_after(who.tenant_id, session_id, after_seq=after_seq, limit=limit)
    out = _page([MessageOut.of(m) for m in found], offset, limit)
    if after_seq is not None:
        out["next_offset"] = None
    out["next_after_seq"] = found[-1].seq if len(found) == limit else None
    return out


# -- usage, agents, health ------------------------------------------------------------------------------
@router.get("/v1/usage", response_model=UsageStatistics, tags=["usage"],
            summary="This user's LLM usage: calls, tokens, latency, time to first token")
async def usage(
    store: StoreDep,
    who: Who,
    session_id: uuid.UUID | None = None,
    start_time: Annotated[datetime | None, Query(description="From this time (inclusive).")] = None,
    end_time: Annotated[datetime | None, Query(description="Until this time (exclusive).")] = None,
) -> Any:
    query = QueryFilter(tenant_id=who.tenant_id, user_id=who.user_id, session_id=session_id,
                        start_time=start_time, end_time=end_time)
    return await store.get_statistics(query)


@router.get("/v1/usage/daily", response_model=UsageDaily, tags=["usage"],
            summary="This user's LLM usage per UTC day and model: calls by status, tokens, TTFT and latency p50/p95")
async def usage_by_day(
    store: StoreDep,
    who: Who,
    days: Annotated[int, Query(ge=1, le=90, description="How many days, today included.")] = 14,
    session_id: uuid.UUID | None = None,
) -> Any:
    query = QueryFilter(tenant_id=who.tenant_id, user_id=who.user_id, session_id=session_id)
    return await usage_daily(store, query, days)


@router.get("/v1/agents", response_model=list[AgentOut], tags=["agents"], summary="The tenant's agents")
async def agents(store: StoreDep, who: Who) -> Any:
    return [AgentOut.of(a) for a in await store.list_agents(who.tenant_id)]


@router.get("/healthz", tags=["health"], summary="The service is up and its database answers (no key needed)")
async def healthz(store: StoreDep) -> Any:
    try:
        await store.migration_status()
    except MofaError as exc:
        raise ApiError(503, f"the database does not answer: {exc}") from None
    return {"status": "ok", "database": store.dialect}
