"""Runs over HTTP: streamed text is the saved reply; runs outlive their connection; resume, cancel and owner
death across two real processes on one PostgreSQL; the same API in one process on SQLite."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx2
import psycopg
import pytest
from pydantic import SecretStr

from mofa_sdk.persistence import connect_store
from tests.server.support import (
    FaultPair,
    InProcess,
    Launcher,
    Served,
    api_call_of,
    auth,
    make_key,
    read_events,
    saved_reply,
    text_of,
)
from tests.support.fault_server import Reply

pytestmark = pytest.mark.slow


async def new_session(client: httpx2.AsyncClient, base: str, key: str) -> str:
    r = await client.post(f"{base}/v1/sessions", json={"title": "t"}, headers=auth(key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def wait_status(client: httpx2.AsyncClient, base: str, key: str, run_id: str, want: str) -> dict[str, Any]:
    for _ in range(300):
        r = await client.get(f"{base}/v1/runs/{run_id}", headers=auth(key))
        if r.status_code == 200 and r.json()["status"] == want:
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {want}: {r.status_code} {r.text}")


async def test_streamed_text_is_the_saved_reply_mofa_serve_postgres(
    fault_pair: FaultPair, client: httpx2.AsyncClient
) -> None:
    """Through the real `mofa serve`, its provider picked from OPENAI_BASE_URL (the loopback fault server)."""
    db, server = fault_pair.db, fault_pair.servers[0]
    pieces = ["Hé", "llo", " wör", "ld\n", "", " 🚀 ", "{\"json\": 1}", " \\n", " end."]
    fault_pair.fault.push(Reply(chunks=pieces, chunk_delay=0.01))
    key, row = await make_key(db)
    sid = await new_session(client, server.url, key)
    async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages", json={"content": "Hi"},
                             headers=auth(key)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events, _ = await read_events(r)
    start, *rest = events
    assert start.event == "run" and start.id is None
    run_id = start.data["run_id"]
    assert [e.id for e in rest] == list(range(1, len(rest) + 1))
    assert rest[-1].event == "done" and rest[-1].data["status"] == "complete"
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert reply is not None and reply.status == "complete"
    assert text_of(rest) == reply.content == "".join(pieces)
    call = await api_call_of(db, row.tenant_id, reply)
    assert call.status == "success" and call.time_to_first_token_ms is not None
    assert rest[-1].data["message_ids"] == {"user": str(reply.parent_message_id), "assistant": str(reply.id)}
    assert rest[-1].data["api_call_id"] == str(call.id) and rest[-1].data["usage"]["total_tokens"] > 0


async def test_streamed_text_is_the_saved_reply_sqlite(in_app: InProcess) -> None:
    client = in_app.client
    db, base = in_app.db, in_app.url
    key, row = await make_key(db)
    sid = await new_session(client, base, key)
    async with client.stream("POST", f"{base}/v1/sessions/{sid}/messages", json={"content": "go words=20"},
                             headers=auth(key)) as r:
        events, _ = await read_events(r)
    reply = await saved_reply(db, row.tenant_id, events[0].data["run_id"])
    assert reply.status == "complete" and text_of(events) == reply.content
    assert [e.id for e in events[1:]] == list(range(1, 25)) and events[-1].event == "done"  # 23 deltas, done
    call = await api_call_of(db, row.tenant_id, reply)
    assert call.status == "success" and call.time_to_first_token_ms is not None


async def test_disconnect_then_resume_in_process_on_sqlite(sqlite_served: Served, client: httpx2.AsyncClient) -> None:
    db, base = sqlite_served.db, sqlite_served.url
    key, row = await make_key(db)
    sid = await new_session(client, base, key)
    async with client.stream("POST", f"{base}/v1/sessions/{sid}/messages",
                             json={"content": "go words=40 delay=0.03"}, headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=3)
    run_id = first[0].data["run_id"]
    async with client.stream("GET", f"{base}/v1/runs/{run_id}/events",
                             headers={**auth(key), "Last-Event-ID": "3"}) as r:
        rest, _ = await read_events(r)
    assert [e.id for e in rest] == list(range(4, len(rest) + 4)) and rest[-1].event == "done"
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert reply.status == "complete" and text_of(first) + text_of(rest) == reply.content
    # a finished run replays from the database, whole, and closes (?after= works like the header)
    async with client.stream("GET", f"{base}/v1/runs/{run_id}/events?after=0", headers=auth(key)) as r:
        again, _ = await read_events(r)
    assert text_of(again) == reply.content and again[-1].event == "done"
    # a client that had everything (the terminal event included) gets nothing more, and the stream closes
    async with client.stream("GET", f"{base}/v1/runs/{run_id}/events", headers={**auth(key),
                             "Last-Event-ID": str(again[-1].id)}) as r:
        none, _ = await read_events(r)
    assert none == []


async def test_disconnect_after_3_events_then_resume_on_the_other_process(
    pg_pair: Served, client: httpx2.AsyncClient
) -> None:
    db, (a, b) = pg_pair.db, pg_pair.servers
    key, row = await make_key(db)
    sid = await new_session(client, a.url, key)
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages",
                             json={"content": "go words=60 delay=0.04 big=20000"}, headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=3)
    run_id = first[0].data["run_id"]
    assert [e.id for e in first[1:]] == [1, 2, 3]
    async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events",
                             headers={**auth(key), "Last-Event-ID": "3"}) as r:
        assert r.status_code == 200
        rest, _ = await read_events(r)
    assert [e.id for e in rest] == list(range(4, len(rest) + 4)), "no gap, no duplicate"
    assert rest[-1].event == "done" and rest[-1].data["status"] == "complete"
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert reply.status == "complete"
    assert text_of(first) + text_of(rest) == reply.content
    # one delta of 40 KB (UTF-8) crossed NOTIFY's 8,000-byte limit in fragments
    assert any(len(e.data["text"]) > 20_000 for e in rest)
    # the finished run, asked of the process that does not hold it: replayed from the row, nothing after the end
    async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events?after=40", headers=auth(key)) as r:
        tail, _ = await read_events(r)
    last = rest[-1].id
    assert last is not None
    assert [e.id for e in tail] == list(range(41, last + 1)) and tail[-1].data == rest[-1].data
    async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events",
                             headers={**auth(key), "Last-Event-ID": str(rest[-1].id)}) as r:
        none, _ = await read_events(r)
    assert none == []


async def test_cancel_from_the_other_process(fault_pair: FaultPair, client: httpx2.AsyncClient) -> None:
    db, (a, b), fault = fault_pair.db, fault_pair.servers, fault_pair.fault
    fault.push(Reply(chunks=200, chunk_delay=0.05))
    key, row = await make_key(db)
    sid = await new_session(client, a.url, key)
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages", json={"content": "go"},
                             headers=auth(key)) as r:
        seen, _ = await read_events(r, stop_after=3)
        run_id = seen[0].data["run_id"]
        stop = await client.post(f"{b.url}/v1/runs/{run_id}/cancel", headers=auth(key))
        assert stop.status_code == 200, stop.text
        assert stop.json() == {"id": run_id, "status": "cancelled", "cancelled": True}
        more, _ = await read_events(r)
    assert more[-1].event == "done" and more[-1].data["status"] == "cancelled"
    await asyncio.wait_for(fault.requests[-1].disconnected.wait(), 10)
    assert fault.requests[-1].client_disconnected and not fault.requests[-1].finished_writing
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert reply.status == "cancelled" and reply.content and reply.content == text_of(seen) + text_of(more)
    call = await api_call_of(db, row.tenant_id, reply)
    assert call.status == "cancelled"


async def test_sigkill_of_the_owner_ends_the_follower_and_the_reply_reads_interrupted(
    launcher: Launcher, client: httpx2.AsyncClient, pg_pair: Served
) -> None:
    pg_url, b = pg_pair.db, pg_pair.servers[1]
    a = await launcher.scripted(pg_url, "--words", "400", "--delay", "0.05", "--lease", "1")
    key, _ = await make_key(pg_url)
    sid = await new_session(client, a.url, key)
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages", json={"content": "go"},
                             headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=2)
    run_id = first[0].data["run_id"]
    async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events", headers=auth(key)) as follow:
        seen, _ = await read_events(follow, stop_after=5)
        live = await client.get(f"{b.url}/v1/runs/{run_id}", headers=auth(key))
        assert live.json()["status"] == "streaming"  # the owner answers for it
        a.kill()
        rest, _ = await read_events(follow)  # must end: no hang
    dead = await client.get(f"{b.url}/v1/runs/{run_id}", headers=auth(key))
    assert dead.json()["status"] == "interrupted"  # nobody answers for it any more
    events = seen + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "error" and events[-1].data["status"] == "interrupted"
    assert events[-1].data["saved_events"] >= 1  # the first delta is always checkpointed
    a2 = await launcher.scripted(pg_url, "--lease", "1")  # the restart
    for _ in range(100):
        r = await client.get(f"{a2.url}/v1/sessions/{sid}/messages", headers=auth(key))
        reply = r.json()["data"][-1]
        if reply["status"] == "interrupted":
            break
        await asyncio.sleep(0.1)
    assert reply["id"] == run_id and reply["status"] == "interrupted" and reply["content"]
    assert text_of(events).startswith(reply["content"]) or reply["content"].startswith(text_of(events))


async def test_on_disconnect_cancel_stops_the_run_and_default_does_not(
    sqlite_served: Served, client: httpx2.AsyncClient
) -> None:
    sqlite_url, server = sqlite_served.db, sqlite_served.servers[0]
    key, row = await make_key(sqlite_url)
    sid = await new_session(client, server.url, key)
    runs = {}
    for mode in ("cancel", "continue"):
        body = {"content": "go words=80 delay=0.03", "on_disconnect": mode}
        async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages", json=body,
                                 headers=auth(key)) as r:
            seen, _ = await read_events(r, stop_after=2)
        runs[mode] = seen[0].data["run_id"]
        await wait_status(client, server.url, key, runs[mode], "cancelled" if mode == "cancel" else "complete")
    cancelled = await saved_reply(sqlite_url, row.tenant_id, runs["cancel"])
    complete = await saved_reply(sqlite_url, row.tenant_id, runs["continue"])
    assert cancelled.status == "cancelled" and 0 < len(cancelled.content) < len(complete.content)
    assert complete.status == "complete"


async def test_keepalive_comment_and_a_client_that_does_not_read(
    sqlite_served: Served, client: httpx2.AsyncClient
) -> None:
    sqlite_url, server = sqlite_served.db, sqlite_served.servers[0]  # keepalive every 0.3 s
    key, row = await make_key(sqlite_url)
    sid = await new_session(client, server.url, key)
    async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages",
                             json={"content": "go words=3 delay=0.7"},
                             headers=auth(key)) as r:
        run_id = r.headers["mofa-run-id"]
        # this client reads nothing while the run goes on: the run is not held back by it
        await wait_status(client, server.url, key, run_id, "complete")
        events, comments = await read_events(r)
    assert comments and all(c == ": keepalive" for c in comments)
    reply = await saved_reply(sqlite_url, row.tenant_id, run_id)
    assert text_of(events) == reply.content and events[-1].event == "done"


async def test_non_streaming_turn_returns_the_finished_reply(in_app: InProcess) -> None:
    client = in_app.client
    sqlite_url, server = in_app.db, in_app
    key, row = await make_key(sqlite_url)
    sid = await new_session(client, server.url, key)
    r = await client.post(f"{server.url}/v1/sessions/{sid}/messages", json={"content": "go", "stream": False},
                          headers=auth(key))
    assert r.status_code == 200, r.text
    body = r.json()
    reply = await saved_reply(sqlite_url, row.tenant_id, body["id"])
    assert body["status"] == "complete" and body["content"] == reply.content
    assert body["message_ids"]["assistant"] == body["id"] and body["usage"]["total_tokens"] > 0


async def test_a_turn_naming_an_agent_row_uses_its_provider_and_settings(
    fault_pair: FaultPair, client: httpx2.AsyncClient
) -> None:
    """The provider choice of `mofa chat`: an agent row first (its provider row's endpoint, model, prompt)."""
    from mofa_sdk.entities import Agent, Provider

    db, server, fault = fault_pair.db, fault_pair.servers[1], fault_pair.fault
    key, row = await make_key(db)
    store = await connect_store(db)
    try:
        p = await store.create_provider(Provider(tenant_id=row.tenant_id, provider_name="fault",
                                                 provider_type="compatible", api_base=fault.base_url,
                                                 api_key=SecretStr("sk-row-key-0000")))
        await store.create_agent(Agent(tenant_id=row.tenant_id, agent_code="helper", agent_name="Helper",
                                       model_name="row-model", system_prompt="You are the row.", provider_id=p.id))
    finally:
        await store.close()
    sid = await new_session(client, server.url, key)
    fault.push(Reply(chunks=["from ", "the row"]))
    r = await client.post(f"{server.url}/v1/sessions/{sid}/messages",
                          json={"content": "hi", "stream": False, "agent": "helper"}, headers=auth(key))
    assert r.status_code == 200 and r.json()["content"] == "from the row"
    sent = fault.requests[-1]
    assert sent.body["model"] == "row-model"
    assert sent.body["messages"][0] == {"role": "system", "content": "You are the row."}
    assert sent.headers["authorization"] == "Bearer sk-row-key-0000"


async def test_a_client_that_does_not_read_a_run_of_the_other_process(
    pg_pair: Served, client: httpx2.AsyncClient
) -> None:
    """2,500 deltas (10 MB: more than the kernel buffers hold) to a follower whose client reads nothing: its
    subscription overflows (the run is not held back), it resumes from the log, and the client still gets every
    event once, in order."""
    db, (a, b) = pg_pair.db, pg_pair.servers
    key, row = await make_key(db)
    sid = await new_session(client, a.url, key)
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages",
                             json={"content": "go words=2500 pad=4000 delay=0.001"}, headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=1)
    run_id = first[0].data["run_id"]
    # a small receive buffer: the server's writes to this client block soon, as with a slow mobile link
    tiny = httpx2.AsyncHTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)])
    async with httpx2.AsyncClient(transport=tiny, timeout=60) as slow, slow.stream(
        "GET", f"{b.url}/v1/runs/{run_id}/events", headers=auth(key)
    ) as follow:
        await wait_status(client, a.url, key, run_id, "complete")  # while this client reads nothing
        events, _ = await read_events(follow)
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert [e.id for e in events] == list(range(1, len(events) + 1)) and events[-1].event == "done"
    assert text_of(events) == reply.content and len(reply.content) > 10_000_000
    assert "fell behind" in b.log.read_text()


async def test_mofa_serve_with_two_workers(
    launcher: Launcher, fault_pair: FaultPair, client: httpx2.AsyncClient
) -> None:
    """`mofa serve --workers 2`: one port, two processes; every reconnect (a new connection, to whichever
    worker the kernel hands it) resumes the run from where it asked, with no gap and no duplicate."""
    db, fault = fault_pair.db, fault_pair.fault
    env = {"OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
    server = await launcher.mofa_serve(db, "--workers", "2", env=env)
    fault.push(Reply(chunks=80, chunk_delay=0.03))
    key, row = await make_key(db)
    sid = await new_session(client, server.url, key)
    async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages", json={"content": "go"},
                             headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=3)
    run_id = first[0].data["run_id"]
    for after in (3, 10, 20):
        async with httpx2.AsyncClient(timeout=30) as fresh, fresh.stream(
            "GET", f"{server.url}/v1/runs/{run_id}/events?after={after}", headers=auth(key)
        ) as r:
            rest, _ = await read_events(r, stop_after=5)
        assert [e.id for e in rest] == list(range(after + 1, after + 6))
    async with client.stream("GET", f"{server.url}/v1/runs/{run_id}/events",
                             headers={**auth(key), "Last-Event-ID": "3"}) as r:
        tail, _ = await read_events(r)
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert reply.status == "complete" and text_of(first) + text_of(tail) == reply.content


async def test_the_bus_reconnects_after_its_connections_are_cut(pg_pair: Served, client: httpx2.AsyncClient) -> None:
    """The LISTEN and NOTIFY connections are cut (as by a database restart or a proxy): both processes
    reconnect, and a run of one is still followed from the other."""
    db, (a, b) = pg_pair.db, pg_pair.servers

    def bus_backends() -> set[int]:
        with psycopg.connect(db, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'mofa serve %'")
            return {r[0] for r in rows.fetchall()}

    before = bus_backends()
    assert before
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                     "'mofa serve %'")
    for _ in range(100):
        await asyncio.sleep(0.1)
        with psycopg.connect(db, autocommit=True) as conn:
            listening = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                     "'mofa serve listen' AND NOT (pid = ANY(%s))", (list(before),)).fetchone()
        if listening and listening[0] >= 2:
            break
    key, row = await make_key(db)
    sid = await new_session(client, a.url, key)
    async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages",
                             json={"content": "go words=40 delay=0.03"}, headers=auth(key)) as r:
        first, _ = await read_events(r, stop_after=3)
    run_id = first[0].data["run_id"]
    async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events",
                             headers={**auth(key), "Last-Event-ID": "3"}) as r:
        rest, _ = await read_events(r)
    assert [e.id for e in rest] == list(range(4, len(rest) + 4)) and rest[-1].event == "done"
    reply = await saved_reply(db, row.tenant_id, run_id)
    assert text_of(first) + text_of(rest) == reply.content
    assert "LISTEN connection was lost" in a.log.read_text() + b.log.read_text()


async def test_a_run_read_back_from_the_database_keeps_its_usage(in_app: InProcess) -> None:
    """Once the process no longer holds a run, ``GET /v1/runs/{id}`` rebuilds it from its rows: the reply and
    its api-call row, so its usage (and a failure) read as they did while it was held."""
    client, base = in_app.client, in_app.url
    key, _ = await make_key(in_app.db)
    sid = await new_session(client, base, key)
    r = await client.post(f"{base}/v1/sessions/{sid}/messages", json={"content": "go", "stream": False},
                          headers=auth(key))
    live = r.json()
    assert live["status"] == "complete" and live["usage"]["total_tokens"] > 0
    assert in_app.app.services is not None
    in_app.app.services.registry.runs.pop(uuid.UUID(live["id"]))  # as after finished_run_seconds
    again = (await client.get(f"{base}/v1/runs/{live['id']}", headers=auth(key))).json()
    assert again["status"] == "complete" and again["content"] == live["content"]
    assert again["usage"] == live["usage"] and again["error"] is None
