"""Routes of runs: start a turn, follow a run's events, read a run, stop it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from ..entities import Session
from ..persistence._protocols import SessionReader
from ..persistence._sessions import owned_session
from ._auth import principal
from ._errors import ApiError, error_body
from ._follow import open_follower, owner_answers
from ._log import Event, delta_count
from ._models import MessageIn, RunOut
from ._runs import Principal, Run, RunRegistry, cancel_run
from ._sse import KEEPALIVE, SSEResponse, sse

__all__ = ["router", "session_of"]

router = APIRouter(tags=["runs"])
Who = Annotated[Principal, Depends(principal)]

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The run's events as server-sent events."}
}


def registry_of(request: Request) -> RunRegistry:
    reg = request.app.state.registry
    assert isinstance(reg, RunRegistry)
    return reg


async def session_of(store: SessionReader, who: Principal, session_id: uuid.UUID) -> Session:
    found = await owned_session(store, who.tenant_id, who.user_id, session_id)
    if found is None:
        raise ApiError(404, f"session {session_id} not found")
    return found


async def _frames(events: AsyncIterator[list[Event]], first: bytes | None = None) -> AsyncGenerator[bytes, None]:
    try:
        if first is not None:
            yield first
        async for batch in events:
            yield b"".join(sse(e.kind, e.data, e.n) for e in batch) if batch else KEEPALIVE
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def _run_out(run: Run) -> RunOut:
    t = run.terminal
    data = t.data if t is not None else {}
    ids = {"user": run.user_message_id, "assistant": run.id if run.parts else None}
    return RunOut(id=run.id, session_id=run.session_id, status=run.status, content="".join(run.parts),
                  message_ids=ids, usage=data.get("usage"), error=data.get("error"),
                  events=t.n if t is not None else len(run.parts))


@router.post(
    "/v1/sessions/{session_id}/messages",
    responses={**_SSE_DOC, 404: {"description": "No such session"}, 409: {"description": "A reply is streaming"}},
    response_model=RunOut,
    summary="Send a message: start a run, and stream its events or wait for the reply",
)
async def post_message(session_id: uuid.UUID, body: MessageIn, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    session = await session_of(registry.store, who, session_id)
    run = await registry.start_run(who, session, body.content, body.agent)
    headers = {"mofa-run-id": str(run.id), "location": f"/v1/runs/{run.id}"}
    if body.stream:
        start = sse("run", {"run_id": str(run.id), "session_id": str(run.session_id),
                            "user_message_id": str(run.user_message_id)})
        from ._follow import follow_local

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


@router.get("/v1/runs/{run_id}/events", responses={**_SSE_DOC, 404: {"description": "No such run"}},
            summary="Follow a run: replay the events after Last-Event-ID (or ?after=N), then live to its end")
async def run_events(
    run_id: uuid.UUID,
    request: Request,
    who: Who,
    after: Annotated[int | None, Query(ge=0, le=10**9, description="Replay the events after this number.")] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", pattern=r"^\s*\d{0,12}\s*$", description="The last event seen.")
    ] = None,
) -> Any:
    registry = registry_of(request)
    events = await open_follower(registry, who, run_id, _after(last_event_id, after))
    return SSEResponse(_frames(events), headers={"mofa-run-id": str(run_id)})


@router.get("/v1/runs/{run_id}", response_model=RunOut, responses={404: {"description": "No such run"}},
            summary="A run's status and its reply so far")
async def get_run(run_id: uuid.UUID, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    run = registry.runs.get(run_id)
    if run is not None and run.owned_by(who):
        return _run_out(run)
    row = await registry.store.get_message(who.tenant_id, run_id)
    if row is None or row.role != "assistant" or row.user_id != who.user_id or run is not None:
        raise ApiError(404, f"run {run_id} not found")
    status = row.status
    if status in ("streaming", "interrupted"):
        # the row cannot tell a live owner whose provider is silent from a dead one: ask the owner
        status = "streaming" if await owner_answers(registry, who, run_id) else "interrupted"
    return RunOut(id=row.id, session_id=row.session_id, status=status, content=row.content,
                  message_ids={"user": row.parent_message_id, "assistant": row.id}, events=delta_count(row))


@router.post("/v1/runs/{run_id}/cancel", responses={404: {"description": "No such run"}},
             summary="Stop a run (from any process): its reply is saved as cancelled")
async def cancel(run_id: uuid.UUID, request: Request, who: Who) -> Any:
    result = await cancel_run(registry_of(request), who, run_id)
    if result is None:
        return JSONResponse(error_body("not_found", f"run {run_id} not found"), status_code=404)
    status, stopped = result
    return {"id": str(run_id), "status": status, "cancelled": stopped}
