"""Routes around the conversations: usage statistics, agents, health."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ..entities import QueryFilter, UsageStatistics
from ..errors import MofaError
from ._auth import principal
from ._errors import error_body
from ._models import AgentOut
from ._routes_runs import registry_of
from ._runs import Principal

__all__ = ["router"]

router = APIRouter()
Who = Annotated[Principal, Depends(principal)]


@router.get("/v1/usage", response_model=UsageStatistics, tags=["usage"],
            summary="This user's LLM usage: calls, tokens, latency, time to first token")
async def usage(
    request: Request,
    who: Who,
    session_id: uuid.UUID | None = None,
    start_time: Annotated[datetime | None, Query(description="From this time (inclusive).")] = None,
    end_time: Annotated[datetime | None, Query(description="Until this time (exclusive).")] = None,
) -> Any:
    store = registry_of(request).store
    query = QueryFilter(tenant_id=who.tenant_id, user_id=who.user_id, session_id=session_id,
                        start_time=start_time, end_time=end_time)
    return await store.get_statistics(query)


@router.get("/v1/agents", response_model=list[AgentOut], tags=["agents"], summary="The tenant's agents")
async def agents(request: Request, who: Who) -> Any:
    return [AgentOut.of(a) for a in await registry_of(request).store.list_agents(who.tenant_id)]


@router.get("/healthz", tags=["health"], summary="The service is up and its database answers (no key needed)")
async def healthz(request: Request) -> Any:
    store = registry_of(request).store
    try:
        await store.migration_status()
    except MofaError as exc:
        return JSONResponse(error_body("unavailable", f"the database does not answer: {exc}"), status_code=503)
    return {"status": "ok", "database": store.dialect}
