"""Routes of sessions and their messages. Everything is scoped by the key's tenant and user: another
tenant's (or user's) session answers 404, exactly like a missing one."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ..entities import Session
from ..errors import SessionBusyError
from ..persistence._store import MAX_PAGE as MAX_PAGE_SIZE
from ._auth import principal
from ._errors import ApiError
from ._models import MessageOut, Page, SessionIn, SessionOut, SessionPatch
from ._routes_runs import registry_of, session_of
from ._runs import Principal

__all__ = ["router"]

router = APIRouter(tags=["sessions"])
Who = Annotated[Principal, Depends(principal)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"data": items, "offset": offset, "limit": limit,
            "next_offset": offset + len(items) if len(items) == limit else None}


@router.post("/v1/sessions", status_code=201, response_model=SessionOut, summary="Create a session")
async def create_session(body: SessionIn, request: Request, who: Who) -> Any:
    store = registry_of(request).store
    fields: dict[str, Any] = {"tenant_id": who.tenant_id, "user_id": who.user_id, "title": body.title,
                              "metadata": body.metadata}
    if body.id is not None:
        fields["id"] = body.id
        if await store.get_session(who.tenant_id, body.id) is not None:
            raise ApiError(409, f"session {body.id} exists already")
    created = await store.create_session(Session(**fields))
    return SessionOut.of(created)


@router.get("/v1/sessions", response_model=Page[SessionOut], summary="This user's sessions, most recent first")
async def list_sessions(request: Request, who: Who, offset: Offset = 0, limit: Limit = 50) -> Any:
    store = registry_of(request).store
    found = await store.get_user_sessions(who.tenant_id, who.user_id, offset=offset, limit=limit)
    return _page([SessionOut.of(s) for s in found], offset, limit)


@router.get("/v1/sessions/{session_id}", response_model=SessionOut, responses={404: {"description": "Not found"}})
async def get_session(session_id: uuid.UUID, request: Request, who: Who) -> Any:
    return SessionOut.of(await session_of(registry_of(request).store, who, session_id))


@router.patch("/v1/sessions/{session_id}", response_model=SessionOut, responses={404: {"description": "Not found"}},
              summary="Rename a session")
async def rename_session(session_id: uuid.UUID, body: SessionPatch, request: Request, who: Who) -> Any:
    store = registry_of(request).store
    await session_of(store, who, session_id)
    return SessionOut.of(await store.update_session(who.tenant_id, session_id, title=body.title))


@router.delete("/v1/sessions/{session_id}", status_code=204, responses={404: {"description": "Not found"}},
               summary="Delete a session, its messages and its api-call records")
async def delete_session(session_id: uuid.UUID, request: Request, who: Who) -> Response:
    registry = registry_of(request)
    await session_of(registry.store, who, session_id)
    if any(r.session_id == session_id and r.terminal is None for r in registry.runs.values()):
        raise SessionBusyError(f"session {session_id} has a reply streaming; cancel its run first")
    await registry.store.delete_session(who.tenant_id, session_id)
    return Response(status_code=204)


@router.get("/v1/sessions/{session_id}/messages", response_model=Page[MessageOut],
            responses={404: {"description": "Not found"}}, summary="A session's messages by seq, statuses shown")
async def list_messages(session_id: uuid.UUID, request: Request, who: Who, offset: Offset = 0,
                        limit: Limit = 100) -> Any:
    store = registry_of(request).store
    await session_of(store, who, session_id)
    found = await store.get_session_messages_paginated(who.tenant_id, session_id, offset, limit)
    return _page([MessageOut.of(m) for m in found], offset, limit)
