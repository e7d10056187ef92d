"""What the service tests share to talk to a service: keys, headers, SSE parsing, the official client, rows."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from mofa_sdk.persistence import connect_store
from tests.support.in_process import auth

__all__ = ["SSE", "api_call_of", "auth", "close_openai_clients", "make_key", "openai_client", "read_events",
           "saved_reply", "text_of"]


_sdk_clients: list[openai.AsyncOpenAI] = []


def openai_client(
    base: str, key: str, transport: httpx2.AsyncBaseTransport | None = None
) -> openai.AsyncOpenAI:
    """An ``openai`` client of ``base`` (through ``transport`` when given: an in-process app's): closed after
    the test, since an open one leaks its sockets."""
    http = None if transport is None else httpx2.AsyncClient(transport=transport, timeout=30)
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, http_client=http)
    _sdk_clients.append(client)
    return client


async def close_openai_clients() -> None:
    while _sdk_clients:
        await _sdk_clients.pop().close()



async def make_key(db: str, tenant: uuid.UUID | None = None, user: uuid.UUID | None = None) -> tuple[str, Any]:
    """A fresh key (and its row) for a fresh tenant, written through the library as `mofa keys create` does."""
    from mofa_sdk.persistence import issue_api_key

    store = await connect_store(db)
    try:
        row, key = await issue_api_key(store, tenant or uuid.uuid4(), user or uuid.uuid4(), "test")
    finally:
        await store.close()
    return key, row


@dataclass
class SSE:
    id: int | None
    event: str
    data: dict[str, Any]


async def read_events(response: httpx2.Response, *, stop_after: int | None = None) -> tuple[list[SSE], list[str]]:
    """Parse an event stream: the events, and the comment lines seen."""
    events: list[SSE] = []
    comments: list[str] = []
    fields: dict[str, str] = {}
    # one line iterator per response, so that a test can read some events, act, then read on
    lines = response.extensions.setdefault("mofa_lines", response.aiter_lines())
    async for line in lines:
        if line.startswith(":"):
            comments.append(line)
            continue
        if line == "":
            if fields:
                events.append(SSE(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                                  json.loads(fields.get("data", "null"))))
                fields = {}
                deltas = sum(1 for e in events if e.event == "delta")
                if stop_after is not None and deltas >= stop_after:
                    break
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
    return events, comments


def text_of(events: list[SSE]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")


async def saved_reply(db: str, tenant: uuid.UUID, run_id: str) -> Any:
    store = await connect_store(db)
    try:
        return await store.get_message(tenant, uuid.UUID(run_id))
    finally:
        await store.close()


async def api_call_of(db: str, tenant: uuid.UUID, reply: Any) -> Any:
    from mofa_sdk.entities import QueryFilter

    store = await connect_store(db)
    try:
        calls = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=reply.session_id))
    finally:
        await store.close()
    return next(c for c in calls if c.response_message_id == reply.id)
