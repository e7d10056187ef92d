"""``GET /metrics``: scraped and parsed with prometheus_client's own parser; the counters move after a turn;
the token guards it; no tenant key is needed; it is off unless asked for."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mofa_sdk.persistence import connect_store, issue_api_key
from mofa_sdk.server import ServeConfig
from tests.server.support import ByContent, InProcess, auth, in_process, read_events

TOKEN = "metrics-token-for-the-test-0123"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[InProcess]:
    db = f"sqlite:///{tmp_path / 'metrics.db'}"
    store = await connect_store(db)
    try:
        config = ServeConfig(max_reply_chars=None, metrics=True, metrics_token=TOKEN)
        async with in_process(store, ByContent(5, 0.0), db, config) as app:
            yield app
    finally:
        await store.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(app: InProcess) -> Samples:
    r = await app.client.get("/metrics", headers=auth(TOKEN))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def test_counters_move_after_a_turn(served: InProcess) -> None:
    _, key = await issue_api_key(served.store, uuid.uuid4(), uuid.uuid4(), "metrics")
    before = await _scrape(served)
    assert _value(before, "mofa_runs_active") == 0 and _value(before, "mofa_followers_active") == 0
    route = "/v1/sessions/{session_id}/messages"
    c = served.client
    session = (await c.post("/v1/sessions", json={}, headers=auth(key))).json()["id"]
    async with c.stream("POST", f"/v1/sessions/{session}/messages", json={"content": "words=6"},
                        headers=auth(key)) as resp:
        events, _ = await read_events(resp)
    assert events[-1].event == "done"
    assert (await c.get("/v1/sessions", headers={"Authorization": "Bearer wrong"})).status_code == 401
    after = await _scrape(served)
    # requests by route template and status (not by path: ids are no label values)
    assert _value(after, "mofa_http_requests_total", method="POST", route=route, status="200") == \
        _value(before, "mofa_http_requests_total", method="POST", route=route, status="200") + 1
    # refused before routing (no valid key): counted, under no route
    assert _value(after, "mofa_http_requests_total", method="GET", route="unmatched", status="401") >= 1
    assert not any("019" in dict(ls).get("route", "") for (_, ls) in after)
    # the turn: its status, tokens by model, the latency and first-token histograms, the GenAI names
    assert _value(after, "mofa_turns_total", status="complete") == _value(before, "mofa_turns_total",
                                                                          status="complete") + 1
    out_tokens = _value(after, "mofa_tokens_total", model="scripted-model", type="output")
    assert out_tokens > _value(before, "mofa_tokens_total", model="scripted-model", type="output")
    assert _value(after, "mofa_turn_duration_seconds_count", model="scripted-model") >= 1
    assert _value(after, "mofa_turn_time_to_first_token_seconds_count", model="scripted-model") >= 1
    assert _sum(after, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == out_tokens
    assert _sum(after, "gen_ai_client_operation_duration_seconds_count") >= 1
    assert _value(after, "mofa_runs_active") == 0 and _value(after, "mofa_followers_active") == 0
    assert _value(after, "mofa_bus_backlog") == 0


async def test_the_metrics_token_guards_the_endpoint_and_no_tenant_key_is_needed(served: InProcess) -> None:
    c = served.client
    r = await c.get("/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert (await c.get("/metrics", headers=auth("not-the-token-0000000"))).status_code == 401
    _, tenant_key = await issue_api_key(served.store, uuid.uuid4(), uuid.uuid4(), "metrics")
    assert (await c.get("/metrics", headers=auth(tenant_key))).status_code == 401  # a tenant key is not it
    assert (await c.get("/metrics", headers=auth(TOKEN))).status_code == 200


async def test_provider_errors_are_counted_by_code(tmp_path: Path) -> None:
    from mofa_sdk.errors import RateLimitError
    from mofa_sdk.llm import ScriptedProvider

    db = f"sqlite:///{tmp_path / 'errors.db'}"
    store = await connect_store(db)
    failing = ScriptedProvider([["half ", "a reply"]], fail_after=1, fail=RateLimitError("slow down"))
    try:
        async with in_process(store, failing, db, ServeConfig(max_reply_chars=None, metrics=True)) as app:
            _, key = await issue_api_key(store, uuid.uuid4(), uuid.uuid4(), "metrics")
            session = (await app.client.post("/v1/sessions", json={}, headers=auth(key))).json()["id"]
            r = await app.client.post(f"/v1/sessions/{session}/messages", json={"content": "hi", "stream": False},
                                      headers=auth(key))
            assert r.status_code == 502, r.text
            samples = await _scrape(app)
    finally:
        await store.close()
    assert _value(samples, "mofa_provider_errors_total", code="rate_limited") == 1
    assert _value(samples, "mofa_turns_total", status="error") == 1


async def test_metrics_are_off_unless_asked_for(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'off.db'}"
    store = await connect_store(db)
    try:
        async with in_process(store, ByContent(2, 0.0), db, ServeConfig(max_reply_chars=None)) as app:
            r = await app.client.get("/metrics")
    finally:
        await store.close()
    assert r.status_code == 401  # an ordinary route: it needs a tenant key, and there is no such route


@pytest.mark.postgres
async def test_the_database_pool_is_reported_on_postgresql(pg_url: str) -> None:
    store = await connect_store(pg_url, max_connections=4)
    try:
        config = ServeConfig(max_reply_chars=None, metrics=True)
        async with in_process(store, ByContent(2, 0.0), pg_url, config) as app:
            samples = await _scrape(app)
    finally:
        await store.close()
    assert _value(samples, "mofa_db_pool_connections", state="max") == 4
    assert _value(samples, "mofa_db_pool_connections", state="open") >= 1
    assert ("mofa_db_pool_requests_waiting", frozenset()) in samples
