"""The reply row of a served run exists before its first delta (issue 24, item 7): written, ``streaming`` and
empty, in the user message's transaction; checkpoints update it. A provider that fails before its first token
leaves it an empty ``error`` reply (the library without ``mofa serve`` writes no row then)."""

from __future__ import annotations

import asyncio
import uuid

import httpx2

from mofa_sdk.entities import Message
from mofa_sdk.persistence import connect_store
from tests.server.support import Served, auth, make_key, read_events, saved_reply


async def test_the_reply_row_is_written_with_the_user_message(pg_pair: Served, client: httpx2.AsyncClient) -> None:
    a = pg_pair.servers[0]
    key, tenant = await make_key(pg_pair.db)
    sid = (await client.post(f"{a.url}/v1/sessions", json={}, headers=auth(key))).json()["id"]
    post = asyncio.create_task(client.post(f"{a.url}/v1/sessions/{sid}/messages",
                                           json={"content": "wait=3 words=3"}, headers=auth(key)))
    try:
        store = await connect_store(pg_pair.db)
        try:
            rows: list[Message] = []
            for _ in range(200):  # the provider's first token is 3 s away: the user message lands well before
                rows = await store.get_session_messages(tenant.tenant_id, uuid.UUID(sid))
                if rows:
                    break
                await asyncio.sleep(0.01)
        finally:
            await store.close()
        # in the database, in one snapshot with the user message: the reply, streaming and empty, before any
        # delta (the API would show a live run from memory; a kill -9 leaves only what is in the database)
        assert [(m.role, m.status, m.content) for m in rows] == [
            ("user", "complete", "wait=3 words=3"), ("assistant", "streaming", "")], rows
    finally:
        done = await post
    assert done.status_code == 200, done.text
    listed = (await client.get(f"{a.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()["data"]
    assert [(m["role"], m["status"]) for m in listed] == [("user", "complete"), ("assistant", "complete")]
    assert listed[1]["content"], listed  # the checkpoints and the final write filled the row in


async def test_a_provider_failing_before_its_first_token_leaves_an_empty_error_reply(
    pg_pair: Served, client: httpx2.AsyncClient
) -> None:
    a = pg_pair.servers[0]
    key, row = await make_key(pg_pair.db)
    sid = (await client.post(f"{a.url}/v1/sessions", json={}, headers=auth(key))).json()["id"]
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages", json={"content": "failfirst=30"},
                             headers=auth(key)) as r:
        events, _ = await read_events(r)
    end = events[-1]
    assert end.event == "error", events
    run_id = events[0].data["run_id"]
    assert end.data["message_ids"]["assistant"] == run_id, end  # the row the terminal event names exists
    reply = await saved_reply(pg_pair.db, row.tenant_id, run_id)
    assert reply is not None and reply.status == "error" and reply.content == ""
    rows = (await client.get(f"{a.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()["data"]
    assert [(m["role"], m["status"], m["content"]) for m in rows] == [
        ("user", "complete", "failfirst=30"), ("assistant", "error", "")], rows
