"""The service the page tests drive: one real ``mofa serve`` process on a SQLite file, its provider the
loopback fault server (``OPENAI_BASE_URL``), paced by the replies a test pushes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx2

from mofa_sdk.persistence import connect_store, issue_api_key
from tests.support.fault_server import FaultServer
from tests.support.processes import Server

__all__ = ["WebServed", "make_key", "make_user", "stored_messages"]


@dataclass
class WebServed:
    db: str
    server: Server
    fault: FaultServer

    @property
    def url(self) -> str:
        return self.server.url


async def make_user(db: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    """A key of a fresh tenant and user, as `mofa keys create` writes it: ``(key, tenant, user)``."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await connect_store(db)
    try:
        _, key = await issue_api_key(store, tenant, user, "web test")
    finally:
        await store.close()
    return key, tenant, user


async def make_key(db: str) -> str:
    return (await make_user(db))[0]


async def stored_messages(served: WebServed, key: str, session_id: str) -> list[dict[str, Any]]:
    """The session's messages as the native API answers them (what the database holds)."""
    async with httpx2.AsyncClient(base_url=served.url, timeout=10) as client:
        response = await client.get(f"/v1/sessions/{session_id}/messages",
                                    headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data
