"""The HTTP surface: auth (401/401/404, nothing read or written), bad input (4xx JSON, never 500, nothing
half-written), sessions and messages, usage, agents, health, the OpenAPI schema fuzzed by schemathesis."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr

from mofa_sdk.entities import Agent, Provider
from mofa_sdk.persistence import connect_store
from tests.server.support import InProcess, Launcher, Served, auth, make_key, read_events, text_of


async def _counts(db: str, tenant: uuid.UUID, user: uuid.UUID) -> tuple[int, int]:
    """(sessions of this user, messages in them)."""
    store = await connect_store(db)
    try:
        sessions = await store.get_user_sessions(tenant, user, limit=1000)
        messages = sum([await store.count_session_messages(tenant, s.id) for s in sessions])
    finally:
        await store.close()
    return len(sessions), messages


def _is_error(r: httpx2.Response, status: int, *words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()["error"]
    assert body["code"] and body["message"]
    for w in words:
        assert w.lower() in body["message"].lower(), body


async def test_auth_no_key_revoked_key_other_tenant(in_app: InProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything the service logs while it serves this test
    client = in_app.client
    sqlite_url, base = in_app.db, in_app.url
    key_b, row_b = await make_key(sqlite_url)
    sid = (await client.post(f"{base}/v1/sessions", json={}, headers=auth(key_b))).json()["id"]
    r = await client.post(f"{base}/v1/sessions/{sid}/messages", json={"content": "hi", "stream": False},
                          headers=auth(key_b))
    run_id = r.json()["id"]
    before_b = await _counts(sqlite_url, row_b.tenant_id, row_b.user_id)
    key_a, row_a = await make_key(sqlite_url)
    revoked, row_r = await make_key(sqlite_url, tenant=row_b.tenant_id, user=row_b.user_id)
    store = await connect_store(sqlite_url)
    assert await store.revoke_api_key(row_r.tenant_id, row_r.id)
    await store.close()

    calls = [
        ("GET", f"/v1/sessions/{sid}", None), ("GET", f"/v1/sessions/{sid}/messages", None),
        ("POST", f"/v1/sessions/{sid}/messages", {"content": "steal", "stream": False}),
        ("PATCH", f"/v1/sessions/{sid}", {"title": "mine"}), ("DELETE", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/runs/{run_id}", None), ("GET", f"/v1/runs/{run_id}/events", None),
        ("POST", f"/v1/runs/{run_id}/cancel", None),
    ]
    for method, path, body in calls:
        _is_error(await client.request(method, base + path, json=body), 401, "missing API key")
        _is_error(await client.request(method, base + path, json=body, headers={"Authorization": "Basic x"}), 401)
        _is_error(await client.request(method, base + path, json=body, headers=auth(revoked)), 401, "revoked")
        r = await client.request(method, base + path, json=body, headers=auth(key_a))
        _is_error(r, 404, "not found")
        # exactly the answer of an id that does not exist at all
        missing = path.replace(sid, str(uuid.uuid4())).replace(run_id, str(uuid.uuid4()))
        r2 = await client.request(method, base + missing, json=body, headers=auth(key_a))
        assert r2.status_code == 404 and r2.json()["error"]["code"] == r.json()["error"]["code"]
    assert (await client.get(f"{base}/v1/sessions", headers=auth(key_a))).json()["data"] == []
    assert await _counts(sqlite_url, row_b.tenant_id, row_b.user_id) == before_b
    assert await _counts(sqlite_url, row_a.tenant_id, row_a.user_id) == (0, 0)
    assert (await client.get(f"{base}/healthz")).json()["status"] == "ok"  # the only open route (and the schema)
    assert (await client.get(f"{base}/openapi.json")).status_code == 200
    log = caplog.text
    assert all(k not in log and k[8:20] not in log for k in (key_a, key_b, revoked)), "a key reached the log"


async def test_bad_input_is_a_4xx_json_naming_the_problem(in_app: InProcess) -> None:
    client = in_app.client
    sqlite_url, base = in_app.db, in_app.url
    key, row = await make_key(sqlite_url)
    h = {**auth(key), "content-type": "application/json"}
    sid = (await client.post(f"{base}/v1/sessions", json={}, headers=auth(key))).json()["id"]
    before = await _counts(sqlite_url, row.tenant_id, row.user_id)
    url = f"{base}/v1/sessions/{sid}/messages"
    _is_error(await client.post(url, content=b'{"content": "hi"', headers=h), 422, "malformed JSON")
    _is_error(await client.post(url, json={"stream": True}, headers=auth(key)), 422, "content")
    _is_error(await client.post(url, json={"content": "   "}, headers=auth(key)), 422, "blank")
    _is_error(await client.post(url, json={"content": "x", "extra": 1}, headers=auth(key)), 422, "extra")
    _is_error(await client.post(url, json={"content": "x", "on_disconnect": "explode"}, headers=auth(key)), 422)
    _is_error(await client.post(url, content=b'{"content": "\\ud800"}', headers=h), 422, "content")
    _is_error(await client.post(url, json={"content": "x", "agent": "nope"}, headers=auth(key)), 404, "nope")
    _is_error(await client.post(f"{base}/v1/sessions/not-a-uuid/messages", json={"content": "x"},
                                headers=auth(key)), 422, "session_id")
    _is_error(await client.get(f"{base}/v1/runs/123/events", headers=auth(key)), 422, "run_id")
    _is_error(await client.get(f"{base}/v1/runs/{uuid.uuid4()}/events",
                               headers={**auth(key), "Last-Event-ID": "abc"}), 422, "Last-Event-ID")
    _is_error(await client.get(f"{base}/v1/sessions?limit=0", headers=auth(key)), 422, "limit")
    _is_error(await client.post(url, content=b"x" * 10_000_000, headers=h), 413, "limit")
    _is_error(await client.get(f"{base}/v1/nothing-here", headers=auth(key)), 404, "no route")
    _is_error(await client.put(f"{base}/v1/sessions", headers=auth(key)), 405)
    _is_error(await client.post(f"{base}/v1/sessions", json={"title": "a\x00b"}, headers=auth(key)), 422, "NUL")
    assert await _counts(sqlite_url, row.tenant_id, row.user_id) == before, "nothing half-written"


async def test_sessions_messages_usage_agents(in_app: InProcess) -> None:
    client = in_app.client
    sqlite_url, base = in_app.db, in_app.url
    key, row = await make_key(sqlite_url)
    h = auth(key)
    made = [(await client.post(f"{base}/v1/sessions", json={"title": f"s{i}"}, headers=h)).json() for i in range(3)]
    chosen = str(uuid.uuid4())
    r = await client.post(f"{base}/v1/sessions", json={"id": chosen}, headers=h)
    assert r.status_code == 201 and r.json()["id"] == chosen
    _is_error(await client.post(f"{base}/v1/sessions", json={"id": chosen}, headers=h), 409)
    page = (await client.get(f"{base}/v1/sessions?limit=2", headers=h)).json()
    assert [s["id"] for s in page["data"]] == [chosen, made[2]["id"]] and page["next_offset"] == 2  # newest first
    last = (await client.get(f"{base}/v1/sessions?limit=2&offset=2", headers=h)).json()
    assert [s["id"] for s in last["data"]] == [made[1]["id"], made[0]["id"]]
    # keyset pages (issue 28): the same order, continued by next_cursor
    keyset = (await client.get(f"{base}/v1/sessions?limit=2&cursor={page['next_cursor']}", headers=h)).json()
    assert [s["id"] for s in keyset["data"]] == [made[1]["id"], made[0]["id"]] and keyset["next_offset"] is None
    assert keyset["next_cursor"] is None  # the store read one row past the page: it knows this is the last
    _is_error(await client.get(f"{base}/v1/sessions?cursor=junk", headers=h), 422, "cursor")
    _is_error(await client.get(f"{base}/v1/sessions?cursor={page['next_cursor']}&offset=2", headers=h), 400, "both")
    sid = made[0]["id"]
    r = await client.patch(f"{base}/v1/sessions/{sid}", json={"title": "renamed"}, headers=h)
    assert r.status_code == 200 and r.json()["title"] == "renamed"
    for text in ("one", "two"):
        r = await client.post(f"{base}/v1/sessions/{sid}/messages", json={"content": text, "stream": False},
                              headers=h)
        assert r.status_code == 200
    msgs = (await client.get(f"{base}/v1/sessions/{sid}/messages?limit=3", headers=h)).json()
    assert [(m["seq"], m["role"], m["status"]) for m in msgs["data"]] == [
        (1, "user", "complete"), (2, "assistant", "complete"), (3, "user", "complete")]
    assert msgs["next_offset"] == 3 and msgs["next_after_seq"] == 3
    rest = (await client.get(f"{base}/v1/sessions/{sid}/messages?after_seq=3", headers=h)).json()
    assert [m["seq"] for m in rest["data"]] == [4] and rest["next_after_seq"] is None
    usage = (await client.get(f"{base}/v1/usage", headers=h)).json()
    assert usage["total_calls"] == 2 and usage["calls_by_status"] == {"success": 2}
    assert (await client.get(f"{base}/v1/usage?session_id={made[1]['id']}", headers=h)).json()["total_calls"] == 0
    # agents: rows of this tenant only, and a turn can name one (its provider is then the row's)
    store = await connect_store(sqlite_url)
    p = await store.create_provider(Provider(tenant_id=row.tenant_id, provider_name="p", provider_type="openai",
                                             api_base="http://127.0.0.1:9/v1", api_key=SecretStr("sk-secret-abcd")))
    await store.create_agent(Agent(tenant_id=row.tenant_id, agent_code="helper", agent_name="Helper",
                                   model_name="m", provider_id=p.id))
    await store.close()
    agents = (await client.get(f"{base}/v1/agents", headers=h))
    assert [a["code"] for a in agents.json()] == ["helper"] and "sk-secret" not in agents.text
    assert r.status_code == 200
    assert (await client.delete(f"{base}/v1/sessions/{sid}", headers=h)).status_code == 204
    _is_error(await client.get(f"{base}/v1/sessions/{sid}", headers=h), 404)


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error(sqlite_served: Served, tmp_path: Any) -> None:
    sqlite_url, server = sqlite_served.db, sqlite_served.servers[0]
    key, _ = await make_key(sqlite_url)
    exe = str(Path(sys.executable).parent / "schemathesis")
    proc = subprocess.run(
        [exe, "run", f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {key}",
         "--checks", "not_a_server_error", "--max-examples", "8", "--workers", "1", "--seed", "1",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "20", "--no-color",
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    log = server.log.read_text()
    assert "Traceback" not in log, log[-4000:]  # the shared server: no test so far made it fail


async def test_the_real_llama_cpp_server(
    launcher: Launcher, client: httpx2.AsyncClient, pg_url: str, llama_server: Any
) -> None:
    """`mofa serve` in front of the real OpenAI-compatible server (llama.cpp with SmolLM2)."""
    server = await launcher.mofa_serve(
        pg_url, env={"OPENAI_BASE_URL": llama_server.base_url, "OPENAI_API_KEY": "none", "MOFA_MAX_TOKENS": "24"}
    )
    key, _ = await make_key(pg_url)
    sid = (await client.post(f"{server.url}/v1/sessions", json={}, headers=auth(key))).json()["id"]
    async with client.stream("POST", f"{server.url}/v1/sessions/{sid}/messages",
                             json={"content": "Say hello."}, headers=auth(key)) as r:
        events, _ = await read_events(r)
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    msgs = (await client.get(f"{server.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()["data"]
    assert msgs[-1]["content"] == text_of(events) and text_of(events).strip()
    assert events[-1].data["time_to_first_token_ms"] is not None
