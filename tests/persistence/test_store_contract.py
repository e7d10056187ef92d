"""The one contract every store keeps: each test runs on InMemoryStore, SqliteStore and PostgresStore.

Tests isolate themselves with fresh tenant and user ids (the PostgreSQL schema is shared by the run).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mofa_sdk.entities import Agent, LLMApiCall, Message, Provider, QueryFilter, Session
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    TenantMismatchError,
    ValidationError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import InMemoryStore, SqliteStore, connect_store

Store = Any  # the fixture yields one of the three stores


# -- builders ---------------------------------------------------------------------------------------
async def new_session(store: Store, tenant: uuid.UUID, user: uuid.UUID, **kw: Any) -> Session:
    return await store.create_session(Session(tenant_id=tenant, user_id=user, **kw))  # type: ignore[no-any-return]


def msg(s: Session, content: str = "hi", **kw: Any) -> Message:
    kw.setdefault("role", "user")
    return Message(session_id=s.id, tenant_id=s.tenant_id, user_id=s.user_id, content=content, **kw)


def call(s: Session, **kw: Any) -> LLMApiCall:
    fields: dict[str, Any] = {"tenant_id": s.tenant_id, "session_id": s.id, "user_id": s.user_id}
    fields.update(model_name="gpt-test", status="success")
    return LLMApiCall(**{**fields, **kw})


def provider(tenant: uuid.UUID, name: str = "openai", **kw: Any) -> Provider:
    kw.setdefault("provider_type", "openai")
    return Provider(tenant_id=tenant, provider_name=name, **kw)


def agent(tenant: uuid.UUID, provider_id: uuid.UUID, code: str = "chat", **kw: Any) -> Agent:
    kw.setdefault("agent_name", f"Agent {code}")
    kw.setdefault("model_name", "gpt-test")
    return Agent(tenant_id=tenant, provider_id=provider_id, agent_code=code, **kw)


def same(a: Any, b: Any, *exclude: str) -> None:
    """Equal field by field (times compared as instants)."""
    assert a.model_dump(exclude=set(exclude)) == b.model_dump(exclude=set(exclude))


# -- schema -----------------------------------------------------------------------------------------
async def test_migrate_is_idempotent_and_status_lists_applied(store: Store) -> None:
    assert await store.migrate() == []
    status = await store.migration_status()
    assert "0001_init" in [name for name, _ in status]
    assert all(applied is not None for _, applied in status)


# -- messages ---------------------------------------------------------------------------------------
async def test_save_and_get_message_round_trips_every_field(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    parent = await store.save_message(msg(s, "question"))
    m = msg(
        s,
        "answer",
        role="assistant",
        agent_id=uuid.uuid4(),
        metadata={"k": [1, 2.5, None, True, {"x": "y"}]},
        parent_message_id=parent.id,
        status="complete",
    )
    saved = await store.save_message(m)
    assert saved.seq == 2
    got = await store.get_message(tenant, m.id)
    assert got is not None
    same(got, saved)
    same(got, m, "seq")


async def test_times_come_back_in_utc_whatever_zone_they_were_given_in(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    naive = datetime(2024, 5, 6, 7, 8, 9, 123456)  # taken as UTC
    plus_two = datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    m = await store.save_message(msg(s, create_time=naive, update_time=plus_two))
    c = await store.save_api_call(call(s, create_time=plus_two))
    expected = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    for got in (m, await store.get_message(tenant, m.id)):
        assert got is not None
        assert (got.create_time, got.update_time) == (expected, expected)
        assert got.create_time.utcoffset() == got.update_time.utcoffset() == timedelta(0)
    read = await store.get_api_call(tenant, c.id)
    assert read is not None and read.create_time == expected and read.create_time.utcoffset() == timedelta(0)
    # a naive bound is UTC too, and compares with the stored times without a TypeError
    window = QueryFilter(tenant_id=tenant, start_time=naive, end_time=naive + timedelta(microseconds=1))
    assert [x.id for x in await store.query_api_calls(window)] == [c.id]


async def test_seq_is_one_to_n_in_save_order(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    saved = [await store.save_message(msg(s, f"m{i}")) for i in range(7)]
    assert [m.seq for m in saved] == list(range(1, 8))
    listed = await store.get_session_messages(tenant, s.id)
    assert [(m.seq, m.content) for m in listed] == [(i + 1, f"m{i}") for i in range(7)]


async def test_save_message_touches_session_update_time(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    old = utc_now() - timedelta(days=3)
    s = await new_session(store, tenant, user, create_time=old, update_time=old)
    await store.save_message(msg(s))
    got = await store.get_session(tenant, s.id)
    assert got is not None and got.update_time > old + timedelta(days=2)


async def test_save_message_needs_the_session_in_this_tenant(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    with pytest.raises(NotFoundError):
        await store.save_message(msg(s).model_copy(update={"session_id": uuid.uuid4()}))
    with pytest.raises(NotFoundError):
        await store.save_message(msg(s).model_copy(update={"tenant_id": uuid.uuid4()}))
    assert await store.count_session_messages(tenant, s.id) == 0


async def test_duplicate_message_id_is_a_conflict_and_leaves_no_gap(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    first = await store.save_message(msg(s, "one"))
    with pytest.raises(ConflictError):
        await store.save_message(msg(s, "dup", id=first.id))
    assert await store.count_session_messages(tenant, s.id) == 1
    assert (await store.get_message(tenant, first.id)).content == "one"
    assert (await store.save_message(msg(s, "two"))).seq == 2  # the failed save handed out no seq


async def test_save_messages_is_ordered_and_all_or_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    saved = await store.save_messages([msg(s, "a"), msg(s, "b", role="assistant"), msg(s, "c")])
    assert [(m.seq, m.content) for m in saved] == [(1, "a"), (2, "b"), (3, "c")]
    bad = [msg(s, "d"), msg(s, "e", id=saved[0].id)]
    with pytest.raises(ConflictError):
        await store.save_messages(bad)
    assert [m.content for m in await store.get_session_messages(tenant, s.id)] == ["a", "b", "c"]
    assert (await store.save_message(msg(s, "f"))).seq == 4


async def test_paginated_messages(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(10)])
    page = await store.get_session_messages_paginated(tenant, s.id, 3, 4)
    assert [m.content for m in page] == ["3", "4", "5", "6"]
    assert [m.seq for m in await store.get_session_messages_paginated(tenant, s.id, 8, 5)] == [9, 10]
    assert await store.get_session_messages_paginated(tenant, s.id, 10, 5) == []
    for offset, limit in [(-1, 5), (0, 0), (0, -2), (0, 10_001), ("1", 5), (0, True)]:
        with pytest.raises(ConfigError):
            await store.get_session_messages_paginated(tenant, s.id, offset, limit)


async def test_get_last_messages_is_oldest_first(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(6)])
    assert [m.content for m in await store.get_last_messages(tenant, s.id, 3)] == ["3", "4", "5"]
    assert [m.seq for m in await store.get_last_messages(tenant, s.id, 50)] == [1, 2, 3, 4, 5, 6]
    assert await store.get_last_messages(tenant, s.id, 0) == []
    with pytest.raises(ConfigError):
        await store.get_last_messages(tenant, s.id, -1)


async def test_delete_and_count_messages(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    other = await new_session(store, tenant, user)
    saved = await store.save_messages([msg(s, str(i)) for i in range(4)])
    await store.save_message(msg(other))
    assert await store.count_session_messages(tenant, s.id) == 4
    assert await store.delete_message(tenant, saved[1].id) is True
    assert await store.delete_message(tenant, saved[1].id) is False
    assert await store.get_message(tenant, saved[1].id) is None
    assert [m.seq for m in await store.get_session_messages(tenant, s.id)] == [1, 3, 4]
    assert await store.delete_session_messages(tenant, s.id) == 3
    assert await store.count_session_messages(tenant, s.id) == 0
    assert await store.count_session_messages(tenant, other.id) == 1
    # seq keeps counting after deletes: numbers are never reused
    assert (await store.save_message(msg(s))).seq == 5


async def test_update_message(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s, "", role="assistant", status="streaming", metadata={"a": 1}))
    await store.update_message(tenant, m.id, content="partial")
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata) == ("partial", "streaming", {"a": 1})
    assert got.update_time >= m.update_time
    await store.update_message(tenant, m.id, content="full reply", status="complete", metadata={"b": [2]})
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata, got.seq) == ("full reply", "complete", {"b": [2]}, 1)
    with pytest.raises(NotFoundError):
        await store.update_message(tenant, uuid.uuid4(), content="x")
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, status="done")
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, content="bad \ud800")
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, metadata={"x": float("nan")})
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata) == ("full reply", "complete", {"b": [2]})


async def test_stale_streaming_reply_reads_as_interrupted(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store.streaming_lease_seconds = 60.0
    s = await new_session(store, tenant, user)
    long_ago = utc_now() - timedelta(minutes=10)
    stale = await store.save_message(
        msg(s, "half", role="assistant", status="streaming", update_time=long_ago)
    )
    fresh = await store.save_message(msg(s, "live", role="assistant", status="streaming"))
    assert (await store.get_message(tenant, stale.id)).status == "interrupted"
    assert (await store.get_message(tenant, fresh.id)).status == "streaming"
    assert [m.status for m in await store.get_session_messages(tenant, s.id)] == ["interrupted", "streaming"]
    assert [m.status for m in await store.get_last_messages(tenant, s.id, 2)] == ["interrupted", "streaming"]
    page = await store.get_session_messages_paginated(tenant, s.id, 0, 2)
    assert [m.status for m in page] == ["interrupted", "streaming"]
    # a checkpoint renews the lease
    await store.update_message(tenant, stale.id, content="half and more")
    assert (await store.get_message(tenant, stale.id)).status == "streaming"


async def test_mark_interrupted_persists_only_stale_streaming(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store.streaming_lease_seconds = 60.0
    s = await new_session(store, tenant, user)
    long_ago = utc_now() - timedelta(minutes=10)
    stale = await store.save_message(msg(s, "x", role="assistant", status="streaming", update_time=long_ago))
    fresh = await store.save_message(msg(s, "y", role="assistant", status="streaming"))
    done = await store.save_message(msg(s, "z", role="assistant", status="complete", update_time=long_ago))
    assert await store.mark_interrupted(tenant, s.id) == 1
    assert await store.mark_interrupted(tenant, s.id) == 0
    store.streaming_lease_seconds = 10_000.0  # now only a persisted status can read as interrupted
    assert (await store.get_message(tenant, stale.id)).status == "interrupted"
    assert (await store.get_message(tenant, fresh.id)).status == "streaming"
    assert (await store.get_message(tenant, done.id)).status == "complete"


async def test_returned_entities_are_copies(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user, metadata={"k": [1]})
    m = msg(s, metadata={"list": [1, 2]})
    saved = await store.save_message(m)
    m.metadata["list"].append(3)
    saved.metadata["list"].append(4)
    got = await store.get_message(tenant, m.id)
    got.metadata["new"] = True
    assert (await store.get_message(tenant, m.id)).metadata == {"list": [1, 2]}
    (await store.get_session(tenant, s.id)).metadata["k"].append(2)
    assert (await store.get_session(tenant, s.id)).metadata == {"k": [1]}


# -- sessions ---------------------------------------------------------------------------------------
async def test_create_session_is_an_upsert(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = Session(tenant_id=tenant, user_id=user, title="first", metadata={"a": 1}, agent_id=uuid.uuid4())
    created = await store.create_session(s)
    same(created, s)
    again = await store.create_session(s.model_copy(update={"title": "second"}))
    assert again.title == "first"
    got = await store.get_session(tenant, s.id)
    same(got, s)


async def test_create_session_refuses_another_tenant_or_user(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user, title="mine")
    with pytest.raises(TenantMismatchError):
        await store.create_session(Session(id=s.id, tenant_id=uuid.uuid4(), user_id=user, title="theirs"))
    with pytest.raises(TenantMismatchError):
        await store.create_session(Session(id=s.id, tenant_id=tenant, user_id=uuid.uuid4(), title="theirs"))
    got = await store.get_session(tenant, s.id)
    assert (got.title, got.user_id) == ("mine", user)


async def test_get_user_sessions_most_recent_first(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    base = utc_now() - timedelta(hours=1)
    made = [
        await new_session(
            store, tenant, user, title=f"s{i}", create_time=base, update_time=base + timedelta(minutes=i)
        )
        for i in range(4)
    ]
    await new_session(store, tenant, uuid.uuid4())  # another user's
    listed = await store.get_user_sessions(tenant, user)
    assert [x.title for x in listed] == ["s3", "s2", "s1", "s0"]
    await store.save_message(msg(made[0]))  # activity moves a session to the front
    assert [x.title for x in await store.get_user_sessions(tenant, user)] == ["s0", "s3", "s2", "s1"]
    assert [x.title for x in await store.get_user_sessions(tenant, user, offset=1, limit=2)] == ["s3", "s2"]
    assert await store.get_user_sessions(tenant, user, offset=4) == []
    with pytest.raises(ConfigError):
        await store.get_user_sessions(tenant, user, limit=0)
    with pytest.raises(ConfigError):
        await store.get_user_sessions(tenant, user, offset=-1)


async def test_update_session(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    old = utc_now() - timedelta(days=1)
    s = await new_session(store, tenant, user, title="t", metadata={"a": 1}, create_time=old, update_time=old)
    updated = await store.update_session(tenant, s.id, title="renamed")
    assert (updated.title, updated.metadata) == ("renamed", {"a": 1})
    assert updated.update_time > old
    updated = await store.update_session(tenant, s.id, metadata={"b": "2"})
    assert (updated.title, updated.metadata) == ("renamed", {"b": "2"})
    updated = await store.update_session(tenant, s.id, title=None)
    assert updated.title is None
    same(await store.get_session(tenant, s.id), updated)
    with pytest.raises(NotFoundError):
        await store.update_session(tenant, uuid.uuid4(), title="x")
    with pytest.raises(ValidationError):
        await store.update_session(tenant, s.id, title="nul\x00")
    assert (await store.get_session(tenant, s.id)).title is None


async def test_delete_session_cascades(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    keep = await new_session(store, tenant, user)
    m = await store.save_message(msg(s))
    c = await store.save_api_call(call(s, request_message_id=m.id))
    kept = await store.save_api_call(call(keep))
    assert await store.delete_session(tenant, s.id) is True
    assert await store.get_session(tenant, s.id) is None
    assert await store.get_message(tenant, m.id) is None
    assert await store.get_api_call(tenant, c.id) is None
    assert await store.count_session_messages(tenant, s.id) == 0
    assert await store.delete_session(tenant, s.id) is False
    assert await store.get_api_call(tenant, kept.id) is not None


# -- api calls --------------------------------------------------------------------------------------
async def test_save_and_get_api_call(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    req = await store.save_message(msg(s))
    c = call(
        s,
        agent_id=uuid.uuid4(),
        request_message_id=req.id,
        response_message_id=uuid.uuid4(),
        status="failed",
        error_message="boom",
        error_code="server_error",
        prompt_tokens=11,
        completion_tokens=7,
        total_tokens=18,
        prompt_tokens_details={"cached_tokens": 3},
        completion_tokens_details={"reasoning_tokens": 1},
        tokens_estimated=True,
        price=0.125,
        price_details={"currency": "USD"},
        latency_ms=812,
        time_to_first_token_ms=90,
        tokens_per_second=42.5,
        provider_response_id="chatcmpl-1",
    )
    same(await store.save_api_call(c), c)
    same(await store.get_api_call(tenant, c.id), c)
    with pytest.raises(ConflictError):
        await store.save_api_call(c)
    with pytest.raises(NotFoundError):
        await store.save_api_call(call(s, session_id=uuid.uuid4()))
    with pytest.raises(NotFoundError):  # the session exists, but not for that tenant
        await store.save_api_call(call(s, tenant_id=uuid.uuid4()))
    assert len(await store.query_api_calls(QueryFilter(tenant_id=tenant))) == 1


async def test_save_api_calls_batch(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    calls = [call(s, prompt_tokens=i) for i in range(3)]
    saved = await store.save_api_calls(calls)
    assert [c.id for c in saved] == [c.id for c in calls]
    with pytest.raises(ConflictError):
        await store.save_api_calls([call(s), calls[0]])
    assert len(await store.query_api_calls(QueryFilter(tenant_id=tenant))) == 3


async def test_query_api_calls_honours_every_filter(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    other_user = uuid.uuid4()
    s1 = await new_session(store, tenant, user)
    s2 = await new_session(store, tenant, other_user)
    a1, a2 = uuid.uuid4(), uuid.uuid4()
    base = utc_now() - timedelta(hours=1)
    rows = [  # (session, agent, status, model, minutes after base)
        (s1, a1, "success", "m-a", 0),
        (s1, a2, "failed", "m-b", 10),
        (s2, a1, "success", "m-b", 20),
        (s2, None, "timeout", "m-a", 30),
        (s1, a1, "rate_limited", "m-a", 40),
    ]
    calls = [
        await store.save_api_call(
            call(s, agent_id=a, status=st, model_name=mo, create_time=base + timedelta(minutes=t))
        )
        for s, a, st, mo, t in rows
    ]

    async def ids(**kw: Any) -> list[int]:
        found = await store.query_api_calls(QueryFilter(tenant_id=tenant, **kw))
        return [next(i for i, c in enumerate(calls) if c.id == f.id) for f in found]

    assert await ids() == [4, 3, 2, 1, 0]  # newest first
    assert await ids(user_id=user) == [4, 1, 0]
    assert await ids(user_id=other_user) == [3, 2]
    assert await ids(session_id=s2.id) == [3, 2]
    assert await ids(agent_id=a1) == [4, 2, 0]
    assert await ids(status="success") == [2, 0]
    assert await ids(model_name="m-b") == [2, 1]
    assert await ids(start_time=base + timedelta(minutes=10)) == [4, 3, 2, 1]  # start is inclusive
    assert await ids(end_time=base + timedelta(minutes=30)) == [2, 1, 0]  # end is exclusive
    assert await ids(start_time=base + timedelta(minutes=5), end_time=base + timedelta(minutes=35)) == [
        3,
        2,
        1,
    ]
    assert await ids(user_id=user, agent_id=a1, model_name="m-a", status="success") == [0]
    assert await ids(offset=1, limit=2) == [3, 2]
    assert await ids(offset=5) == []
    assert await store.query_api_calls(QueryFilter(tenant_id=uuid.uuid4())) == []


async def test_get_statistics(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    spec = [  # status, prompt, completion, price, latency, ttft, tokens/s
        ("success", 10, 5, 0.5, 100, 10, 10.0),
        ("success", 20, 10, 0.25, 200, 20, 20.0),
        ("success", 30, 15, None, 300, 30, None),
        ("failed", 0, 0, 0.25, 400, None, None),
    ]
    for st, p, c, price, lat, ttft, tps in spec:
        await store.save_api_call(
            call(
                s,
                status=st,
                prompt_tokens=p,
                completion_tokens=c,
                total_tokens=p + c,
                price=price,
                latency_ms=lat,
                time_to_first_token_ms=ttft,
                tokens_per_second=tps,
            )
        )
    stats = await store.get_statistics(QueryFilter(tenant_id=tenant, limit=1, offset=3))  # paging is ignored
    assert stats.total_calls == 4
    assert stats.calls_by_status == {"success": 3, "failed": 1}
    assert (stats.success_calls, stats.failed_calls) == (3, 1)
    assert (stats.prompt_tokens, stats.completion_tokens, stats.total_tokens) == (60, 30, 90)
    assert stats.total_price == pytest.approx(1.0)
    assert stats.avg_latency_ms == pytest.approx(250.0)
    assert stats.p50_latency_ms == pytest.approx(250.0)
    assert stats.p95_latency_ms == pytest.approx(385.0)  # 300 + 0.85 * 100, as percentile_cont
    assert stats.p50_time_to_first_token_ms == pytest.approx(20.0)
    assert stats.p95_time_to_first_token_ms == pytest.approx(29.0)
    assert stats.avg_tokens_per_second == pytest.approx(15.0)

    ok = await store.get_statistics(QueryFilter(tenant_id=tenant, status="success"))
    assert (ok.total_calls, ok.total_tokens, ok.calls_by_status) == (3, 90, {"success": 3})
    assert ok.p95_latency_ms == pytest.approx(290.0)

    none = await store.get_statistics(QueryFilter(tenant_id=tenant, model_name="nothing"))
    assert (none.total_calls, none.calls_by_status, none.total_tokens, none.total_price) == (0, {}, 0, 0.0)
    assert (
        none.avg_latency_ms is None
        and none.p50_latency_ms is None
        and none.p95_time_to_first_token_ms is None
    )
    assert none.avg_tokens_per_second is None


async def test_cleanup_old_records(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    # only this test writes api calls dated before 2001: the all-tenant delete touches no other test
    s = await new_session(store, tenant, user)
    other_tenant = uuid.uuid4()
    s_other = await new_session(store, other_tenant, user)
    old = datetime(1999, 6, 1, tzinfo=UTC)
    old_calls = [await store.save_api_call(call(s, create_time=old + timedelta(days=i))) for i in range(3)]
    recent = await store.save_api_call(call(s))
    theirs = await store.save_api_call(call(s_other, create_time=old))
    cutoff = datetime(2000, 1, 1, tzinfo=UTC)
    assert await store.cleanup_old_records(cutoff, tenant_id=tenant) == 3
    assert [await store.get_api_call(tenant, c.id) for c in old_calls] == [None, None, None]
    assert await store.get_api_call(tenant, recent.id) is not None
    assert await store.get_api_call(other_tenant, theirs.id) is not None
    assert await store.cleanup_old_records(cutoff) == 1
    assert await store.get_api_call(other_tenant, theirs.id) is None
    assert await store.get_api_call(tenant, recent.id) is not None


# -- providers and agents ---------------------------------------------------------------------------
async def test_provider_crud(store: Store, tenant: uuid.UUID) -> None:
    p = provider(tenant, "zeta", api_base="http://127.0.0.1:9/v1", api_key=SecretStr("sk-one"))
    created = await store.create_provider(p)
    assert created.api_key is not None and created.api_key.get_secret_value() == "sk-one"
    got = await store.get_provider(tenant, p.id)
    same(got, p, "api_key")
    assert got.api_key.get_secret_value() == "sk-one"
    await store.create_provider(provider(tenant, "alpha", provider_type="local", enabled=False))
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["alpha", "zeta"]
    assert [x.provider_name for x in await store.get_enabled_providers(tenant)] == ["zeta"]
    assert (await store.get_provider_by_name(tenant, "alpha")).provider_type == "local"
    assert await store.get_provider_by_name(tenant, "missing") is None

    changed = p.model_copy(
        update={"provider_name": "zeta2", "api_key": SecretStr("sk-two"), "enabled": False}
    )
    updated = await store.update_provider(changed)
    assert (updated.provider_name, updated.api_key.get_secret_value(), updated.enabled) == (
        "zeta2",
        "sk-two",
        False,
    )
    got = await store.get_provider(tenant, p.id)
    assert (got.provider_name, got.api_key.get_secret_value()) == ("zeta2", "sk-two")
    assert await store.get_enabled_providers(tenant) == []
    cleared = await store.update_provider(got.model_copy(update={"api_key": None}))
    assert cleared.api_key is None and (await store.get_provider(tenant, p.id)).api_key is None

    with pytest.raises(NotFoundError):
        await store.update_provider(provider(tenant, "ghost"))
    assert await store.delete_provider(tenant, p.id) is True
    assert await store.delete_provider(tenant, p.id) is False
    assert await store.get_provider(tenant, p.id) is None


async def test_provider_name_is_unique_per_tenant(store: Store, tenant: uuid.UUID) -> None:
    first = await store.create_provider(provider(tenant, "openai"))
    await store.create_provider(provider(uuid.uuid4(), "openai"))  # another tenant: fine
    with pytest.raises(ConflictError):
        await store.create_provider(provider(tenant, "openai"))
    with pytest.raises(ConflictError):
        await store.create_provider(first)  # same id
    second = await store.create_provider(provider(tenant, "vllm"))
    with pytest.raises(ConflictError):
        await store.update_provider(second.model_copy(update={"provider_name": "openai"}))
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["openai", "vllm"]


async def test_agent_crud(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant))
    a = agent(
        tenant,
        p.id,
        "writer",
        agent_order=2,
        context_limit=10,
        custom_params={"top_p": 0.9},
        max_completion_tokens=256,
        response_format={"type": "json_object"},
        system_prompt="Be brief.",
        temperature=0.7,
        stream=False,
        thinking={"budget": 100},
    )
    same(await store.create_agent(a), a)
    same(await store.get_agent(tenant, a.id), a)
    same(await store.get_agent_by_code_and_tenant(tenant, "writer"), a)
    await store.create_agent(agent(tenant, p.id, "b-helper", agent_order=1))
    await store.create_agent(agent(tenant, p.id, "a-helper", agent_order=1, agent_status=False))
    assert [x.agent_code for x in await store.list_agents(tenant)] == ["a-helper", "b-helper", "writer"]
    assert [x.agent_code for x in await store.get_active_agents(tenant)] == ["b-helper", "writer"]

    updated = await store.update_agent(
        a.model_copy(update={"agent_name": "Writer 2", "response_format": "text"})
    )
    assert (updated.agent_name, updated.response_format) == ("Writer 2", "text")
    assert (await store.get_agent(tenant, a.id)).agent_name == "Writer 2"
    with pytest.raises(NotFoundError):
        await store.update_agent(agent(tenant, p.id, "ghost"))
    with pytest.raises(NotFoundError):
        await store.update_agent(a.model_copy(update={"provider_id": uuid.uuid4()}))

    with pytest.raises(ConflictError):  # still used by agents
        await store.delete_provider(tenant, p.id)
    assert await store.get_provider(tenant, p.id) is not None
    assert await store.delete_agent(tenant, a.id) is True
    assert await store.delete_agent(tenant, a.id) is False
    assert await store.get_agent(tenant, a.id) is None


async def test_agent_code_is_unique_per_tenant(store: Store, tenant: uuid.UUID) -> None:
    other = uuid.uuid4()
    p = await store.create_provider(provider(tenant))
    p_other = await store.create_provider(provider(other))
    await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    await store.create_agent(agent(other, p_other.id, "chat-assistant"))  # same code, another tenant: fine
    with pytest.raises(ConflictError):
        await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    second = await store.create_agent(agent(tenant, p.id, "second"))
    with pytest.raises(ConflictError):
        await store.update_agent(second.model_copy(update={"agent_code": "chat-assistant"}))
    assert [x.agent_code for x in await store.list_agents(tenant)] == ["chat-assistant", "second"]


async def test_agent_needs_a_provider_of_its_tenant(store: Store, tenant: uuid.UUID) -> None:
    p_other = await store.create_provider(provider(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await store.create_agent(agent(tenant, uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await store.create_agent(agent(tenant, p_other.id))
    assert await store.list_agents(tenant) == []


async def test_agent_with_provider(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-x")))
    a = await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    config = await store.get_agent_by_code_and_tenant_with_provider(tenant, "chat-assistant")
    assert config is not None
    assert (config.agent.id, config.provider.id) == (a.id, p.id)
    assert config.provider.api_key.get_secret_value() == "sk-x"
    assert (await store.get_agent_by_code_and_tenant_with_provider(str(tenant), "chat-assistant")) is not None
    assert await store.get_agent_by_code_and_tenant_with_provider(tenant, "missing") is None
    assert await store.get_agent_by_code_and_tenant_with_provider(uuid.uuid4(), "chat-assistant") is None


def _raw_api_key(store: Store, request: pytest.FixtureRequest, provider_id: uuid.UUID) -> str | None:
    """The api_key column as stored, read around the store with the database's own client."""
    if store.dialect == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT api_key FROM entity_provider WHERE id = ?", (str(provider_id),)
            ).fetchone()
        return row[0]  # type: ignore[no-any-return]
    import psycopg

    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        row = conn.execute("SELECT api_key FROM entity_provider WHERE id = %s", (provider_id,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def test_api_keys_are_encrypted_at_rest(
    store: Store, tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("MOFA_SECRET_KEY", "correct horse battery staple")
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-very-secret-123")))
    assert "sk-very-secret-123" not in repr(p) and "sk-very-secret-123" not in str(p)
    if store.dialect in ("sqlite", "postgres"):
        raw = _raw_api_key(store, request, p.id)
        assert raw is not None and raw.startswith("enc:") and "sk-very-secret-123" not in raw
    assert (await store.get_provider(tenant, p.id)).api_key.get_secret_value() == "sk-very-secret-123"

    monkeypatch.setenv("MOFA_SECRET_KEY", "a different key")
    with pytest.raises(ConfigError) as err:
        await store.get_provider(tenant, p.id)
    assert "sk-very-secret-123" not in str(err.value)
    monkeypatch.delenv("MOFA_SECRET_KEY")
    with pytest.raises(ConfigError):
        await store.list_providers(tenant)


async def test_api_keys_without_secret_are_stored_as_given(
    store: Store, tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOFA_SECRET_KEY", raising=False)
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-plain")))
    assert (await store.get_provider(tenant, p.id)).api_key.get_secret_value() == "sk-plain"


# -- transactions -----------------------------------------------------------------------------------
async def test_transaction_commits_writes_together(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = Session(tenant_id=tenant, user_id=user)
    async with store.transaction() as tx:
        await store.create_session(s, tx=tx)
        user_msg = await store.save_message(msg(s, "question"), tx=tx)
        reply = await store.save_message(msg(s, "answer", role="assistant"), tx=tx)
        await store.save_api_call(
            call(s, request_message_id=user_msg.id, response_message_id=reply.id), tx=tx
        )
        await store.update_session(tenant, s.id, title="titled", tx=tx)
    assert [m.content for m in await store.get_session_messages(tenant, s.id)] == ["question", "answer"]
    assert (await store.get_session(tenant, s.id)).title == "titled"
    assert len(await store.query_api_calls(QueryFilter(tenant_id=tenant))) == 1


async def test_transaction_rolls_back_together(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    kept = await new_session(store, tenant, user, title="before")
    old = await store.save_message(msg(kept, "old"))
    s = Session(tenant_id=tenant, user_id=user)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await store.create_session(s, tx=tx)
            await store.save_message(msg(s, "lost"), tx=tx)
            await store.save_message(msg(kept, "lost too"), tx=tx)
            await store.update_session(tenant, kept.id, title="after", tx=tx)
            await store.delete_message(tenant, old.id, tx=tx)
            raise Boom
    assert await store.get_session(tenant, s.id) is None
    assert [m.content for m in await store.get_session_messages(tenant, kept.id)] == ["old"]
    assert (await store.get_session(tenant, kept.id)).title == "before"
    assert (await store.save_message(msg(kept, "next"))).seq == 2  # the rolled-back seq is handed out again


async def test_transaction_rolls_back_on_a_failed_write(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    first = await store.save_message(msg(s, "one"))
    with pytest.raises(ConflictError):
        async with store.transaction() as tx:
            await store.save_message(msg(s, "two"), tx=tx)
            await store.save_message(msg(s, "dup", id=first.id), tx=tx)
    assert [m.content for m in await store.get_session_messages(tenant, s.id)] == ["one"]


# -- tenant isolation -------------------------------------------------------------------------------
async def test_another_tenant_finds_and_changes_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store.streaming_lease_seconds = 60.0
    s = await new_session(store, tenant, user, title="mine")
    long_ago = utc_now() - timedelta(minutes=10)
    m = await store.save_message(
        msg(s, "private", status="streaming", role="assistant", update_time=long_ago)
    )
    c = await store.save_api_call(call(s))
    p = await store.create_provider(provider(tenant))
    a = await store.create_agent(agent(tenant, p.id))
    x = uuid.uuid4()  # the other tenant

    assert await store.get_message(x, m.id) is None
    assert await store.get_session_messages(x, s.id) == []
    assert await store.get_session_messages_paginated(x, s.id, 0, 10) == []
    assert await store.get_last_messages(x, s.id, 10) == []
    assert await store.count_session_messages(x, s.id) == 0
    assert await store.get_session(x, s.id) is None
    assert await store.get_user_sessions(x, user) == []
    assert await store.get_api_call(x, c.id) is None
    assert await store.query_api_calls(QueryFilter(tenant_id=x, session_id=s.id)) == []
    assert (await store.get_statistics(QueryFilter(tenant_id=x, session_id=s.id))).total_calls == 0
    assert await store.get_provider(x, p.id) is None
    assert await store.get_provider_by_name(x, p.provider_name) is None
    assert await store.list_providers(x) == [] and await store.get_enabled_providers(x) == []
    assert await store.get_agent(x, a.id) is None
    assert await store.get_agent_by_code_and_tenant(x, a.agent_code) is None
    assert await store.list_agents(x) == [] and await store.get_active_agents(x) == []

    with pytest.raises(NotFoundError):
        await store.update_message(x, m.id, content="hijacked")
    with pytest.raises(NotFoundError):
        await store.update_session(x, s.id, title="hijacked")
    with pytest.raises(NotFoundError):
        await store.update_provider(p.model_copy(update={"tenant_id": x, "provider_name": "hijacked"}))
    with pytest.raises(NotFoundError):
        await store.update_agent(a.model_copy(update={"tenant_id": x, "agent_name": "hijacked"}))
    assert await store.mark_interrupted(x, s.id) == 0
    assert await store.cleanup_old_records(utc_now() + timedelta(days=1), tenant_id=x) == 0
    assert await store.delete_message(x, m.id) is False
    assert await store.delete_session_messages(x, s.id) == 0
    assert await store.delete_session(x, s.id) is False
    assert await store.delete_agent(x, a.id) is False
    assert await store.delete_provider(x, p.id) is False

    store.streaming_lease_seconds = 10_000.0  # mark_interrupted above must not have persisted anything
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status) == ("private", "streaming")
    assert (await store.get_session(tenant, s.id)).title == "mine"
    assert await store.get_api_call(tenant, c.id) is not None
    assert (await store.get_provider(tenant, p.id)).provider_name == p.provider_name
    assert (await store.get_agent(tenant, a.id)).agent_name == a.agent_name


# -- connecting -------------------------------------------------------------------------------------
async def test_connect_store_picks_the_store_from_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = await connect_store("memory://")
    assert isinstance(mem, InMemoryStore)
    await mem.close()
    sq = await connect_store(f"sqlite:///{tmp_path}/deep/er/a.db")  # absolute (four slashes), folders created
    assert isinstance(sq, SqliteStore) and (tmp_path / "deep/er/a.db").exists()
    assert all(applied is not None for _, applied in await sq.migration_status())
    await sq.close()
    monkeypatch.chdir(tmp_path)
    rel = await connect_store("sqlite:///rel/b.db", streaming_lease_seconds=2.5)
    assert rel.streaming_lease_seconds == 2.5 and (tmp_path / "rel/b.db").exists()
    await rel.close()
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    env = await connect_store()
    assert isinstance(env, SqliteStore) and (tmp_path / "from-env.db").exists()
    await env.close()
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default = await connect_store()
    assert isinstance(default, SqliteStore) and (tmp_path / "xdg/mofa/mofa.db").exists()
    await default.close()


async def test_connect_store_refuses_unknown_urls_without_echoing_secrets() -> None:
    for url, shown in [
        ("mysql://root:hunter2@db/x", "mysql"),
        ("hunter2", "no scheme"),
        ("sqlite://relative.db", "sqlite:///"),
        ("sqlite:///", "no file"),
    ]:
        with pytest.raises(ConfigError) as err:
            await connect_store(url)
        assert shown in str(err.value)
        assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        await connect_store("redis://u:pw@h")
    assert (
        "postgresql://" in str(err.value) and "sqlite:///" in str(err.value) and "memory://" in str(err.value)
    )


async def test_sqlite_in_memory_store_works() -> None:
    async with await SqliteStore.in_memory() as s:
        t, u = uuid.uuid4(), uuid.uuid4()
        session = await new_session(s, t, u)
        assert (await s.save_message(msg(session))).seq == 1
        assert await s.count_session_messages(t, session.id) == 1


# -- the embedded stores' own transaction rules -----------------------------------------------------
@pytest.fixture(params=["memory", "sqlite"])
async def local_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s: Any = (
        InMemoryStore()
        if request.param == "memory"
        else await SqliteStore.connect(f"sqlite:///{tmp_path}/l.db")
    )
    yield s
    await s.close()


async def test_nested_transaction_is_a_savepoint(
    local_store: Any, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(local_store, tenant, user)
    async with local_store.transaction() as tx:
        await local_store.save_message(msg(s, "outer"), tx=tx)
        with pytest.raises(RuntimeError):
            async with local_store.transaction() as inner:
                await local_store.save_message(msg(s, "inner"), tx=inner)
                raise RuntimeError
        # the same task reads its own uncommitted writes, and plain writes join the open transaction
        assert [m.content for m in await local_store.get_session_messages(tenant, s.id)] == ["outer"]
        await local_store.save_message(msg(s, "joined"))
    assert [m.content for m in await local_store.get_session_messages(tenant, s.id)] == ["outer", "joined"]


async def test_a_failed_write_caught_inside_a_transaction_leaves_it_as_it_was(
    local_store: Any, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    # (PostgreSQL aborts the whole transaction on a failed statement: the local stores let it go on)
    s = await new_session(local_store, tenant, user)
    async with local_store.transaction() as tx:
        one = await local_store.save_message(msg(s, "one"), tx=tx)
        first = await local_store.save_api_call(call(s), tx=tx)
        with pytest.raises(ConflictError):  # several statements (the seq, then the row)
            await local_store.save_message(msg(s, "dup", id=one.id), tx=tx)
        with pytest.raises(ConflictError):  # one statement
            await local_store.save_api_call(call(s, id=first.id), tx=tx)
        with pytest.raises(NotFoundError):
            await local_store.update_session(tenant, uuid.uuid4(), title="nobody", tx=tx)
        two = await local_store.save_message(msg(s, "two"), tx=tx)
    assert [(m.content, m.seq) for m in await local_store.get_session_messages(tenant, s.id)] == [
        ("one", 1), ("two", 2)
    ]
    assert two.seq == 2
    assert [c.id for c in await local_store.query_api_calls(QueryFilter(tenant_id=tenant))] == [first.id]


async def test_bad_tx_arguments(local_store: Any, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(local_store, tenant, user)
    with pytest.raises(ConfigError, match="tx"):
        await local_store.save_message(msg(s), tx=object())
    async with local_store.transaction() as tx:
        pass
    with pytest.raises(ConfigError, match="finished"):
        await local_store.save_message(msg(s), tx=tx)
    assert await local_store.count_session_messages(tenant, s.id) == 0


async def test_sqlite_accepts_its_own_connection_as_tx(
    tmp_path: Path, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store = await SqliteStore.connect(f"sqlite:///{tmp_path}/own.db")
    try:
        conn = store.connection
        s = Session(tenant_id=tenant, user_id=user)
        await conn.execute("BEGIN IMMEDIATE")  # the caller's own transaction on the store's connection
        await store.create_session(s, tx=conn)
        await store.save_message(msg(s, "x"), tx=conn)
        await conn.execute("ROLLBACK")
        assert await store.get_session(tenant, s.id) is None
        await store.create_session(s, tx=conn)  # no transaction open on it: an ordinary write
        assert (await store.save_message(msg(s, "y"), tx=conn)).seq == 1
        assert await store.count_session_messages(tenant, s.id) == 1
    finally:
        await store.close()


# -- one rule for every store: bounds, keys, ids (issue 14, items 7, 8 and 10) ------------------------
INT32_MAX = 2**31 - 1


async def test_last_messages_reads_any_k_up_to_the_64_bit_bound(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """A window of 5,000 rounds asks for 10,002 messages when a session resumes: every store answers
    (PostgreSQL refused anything above 10,000); beyond 2**63 - 1 every store says so (SQLite overflowed)."""
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(3)])
    for k in (10_002, 2**40, 2**63 - 1):
        assert [m.content for m in await store.get_last_messages(tenant, s.id, k)] == ["0", "1", "2"]
    for bad in (2**63, 2**64, -1, True, "3", 2.0):
        with pytest.raises(ConfigError, match="k must be an integer from 0 to 2"):
            await store.get_last_messages(tenant, s.id, bad)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda s, p: call(s, prompt_tokens=INT32_MAX + 1), "prompt_tokens"),
        (lambda s, p: call(s, completion_tokens=2**63), "completion_tokens"),
        (lambda s, p: call(s, total_tokens=2**70), "total_tokens"),
        (lambda s, p: call(s, latency_ms=INT32_MAX + 1), "latency_ms"),
        (lambda s, p: call(s, time_to_first_token_ms=2**63), "time_to_first_token_ms"),
        (lambda s, p: call(s, price=1e10), "price"),
        (lambda s, p: call(s, price=float("inf")), "price"),
        (lambda s, p: call(s, tokens_per_second=float("inf")), "tokens_per_second"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=INT32_MAX + 1), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=-(2**31) - 1), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=2**63), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, max_completion_tokens=2**63), "max_completion_tokens"),
        (lambda s, p: agent(s.tenant_id, p.id, context_limit=INT32_MAX + 1), "context_limit"),
        (lambda s, p: msg(s, seq=2**63), "seq"),
    ],
)
async def test_integers_beyond_the_narrowest_column_are_refused_by_every_store(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, build: Any, field: str
) -> None:
    """PostgreSQL's integer columns hold 32 bits, SQLite's 64: a value is refused by the entity, before any
    store sees it, so none keeps what another cannot (SQLite raised a raw OverflowError from 2**63)."""
    s = await new_session(store, tenant, user)
    p = await store.create_provider(provider(tenant))
    with pytest.raises(ValidationError, match=field):
        build(s, p)


async def test_integers_at_the_bound_round_trip_on_every_store(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    c = call(s, prompt_tokens=INT32_MAX, completion_tokens=INT32_MAX, total_tokens=INT32_MAX,
             latency_ms=INT32_MAX, time_to_first_token_ms=INT32_MAX)  # fmt: skip
    await store.save_api_call(c)
    got = await store.get_api_call(tenant, c.id)
    assert got is not None and (got.prompt_tokens, got.latency_ms) == (INT32_MAX, INT32_MAX)
    p = await store.create_provider(provider(tenant))
    for code, order in (("low", -(2**31)), ("high", INT32_MAX)):
        a = await store.create_agent(
            agent(tenant, p.id, code, agent_order=order, max_completion_tokens=INT32_MAX, context_limit=INT32_MAX)
        )
        same(await store.get_agent(tenant, a.id), a)


async def test_look_alike_agent_codes_cannot_coexist(store: Store, tenant: uuid.UUID) -> None:
    """NFKC folds full-width and compatibility forms into one code; invisible and control characters and
    surrounding whitespace are refused, so no two agents of a tenant read the same."""
    p = await store.create_provider(provider(tenant))
    chat = await store.create_agent(agent(tenant, p.id, "chat"))
    assert agent(tenant, p.id, "ｃｈａｔ").agent_code == "chat"
    with pytest.raises(ConflictError):
        await store.create_agent(agent(tenant, p.id, "ｃｈａｔ"))
    for bad in ("chat\u200b", "c\u200dhat", "cha\u00adt", "ch\u2028at", "\u2066chat", "cha\u3164t", "chat\x1b"):
        with pytest.raises(ValidationError, match=r"agent_code must not contain invisible or control"):
            agent(tenant, p.id, bad)
    for bad in ("chat ", " chat", "chat\t", "chat\u3000"):
        with pytest.raises(ValidationError, match="agent_code must not start or end with whitespace"):
            agent(tenant, p.id, bad)
    with pytest.raises(ValidationError, match="agent_code"):
        await store.update_agent(chat.model_copy(update={"agent_code": "chat\u200b"}))
    assert [a.agent_code for a in await store.list_agents(tenant)] == ["chat"]
    # a lookup takes the code as it is stored: the full-width form finds the agent, an invisible one is refused
    found = await store.get_agent_by_code_and_tenant(tenant, "ｃｈａｔ")
    assert found is not None and found.id == chat.id
    with pytest.raises(ValidationError, match="agent_code"):
        await store.get_agent_by_code_and_tenant(tenant, "chat\u200b")
    # inner spaces and any script stay: a code is not forced into ASCII
    assert (await store.create_agent(agent(tenant, p.id, "客服 bot"))).agent_code == "客服 bot"


async def test_look_alike_provider_names_cannot_coexist(store: Store, tenant: uuid.UUID) -> None:
    await store.create_provider(provider(tenant, "openai"))
    with pytest.raises(ConflictError):
        await store.create_provider(provider(tenant, "ｏｐｅｎａｉ"))
    for bad in ("openai\u200b", "openai ", "\ufeffopenai"):
        with pytest.raises(ValidationError, match="provider_name"):
            provider(tenant, bad)
    found = await store.get_provider_by_name(tenant, "ｏｐｅｎａｉ")
    assert found is not None and found.provider_name == "openai"
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["openai"]


async def test_agent_names_refuse_control_characters(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant))
    with pytest.raises(ValidationError, match="agent_name must not contain control characters"):
        agent(tenant, p.id, agent_name="evil \x1b[2J name")
    # a display name keeps what people type: emoji sequences with joiners, inner spaces
    family = await store.create_agent(agent(tenant, p.id, "family", agent_name="Helper 👩\u200d👩\u200d👧"))
    assert (await store.get_agent(tenant, family.id)).agent_name == "Helper 👩\u200d👩\u200d👧"


async def test_lone_surrogates_in_lookups_and_keys_are_a_validation_error(
    store: Store, tenant: uuid.UUID
) -> None:
    """What a shell's $'\\xff' becomes in Python: every store refuses it the same way, raising no
    UnicodeEncodeError (SQLite and PostgreSQL did) and returning no None (the memory store did)."""
    bad = "\udcff"
    with pytest.raises(ValidationError, match="agent_code contains a character UTF-8 cannot encode"):
        await store.get_agent_by_code_and_tenant(tenant, bad)
    with pytest.raises(ValidationError, match="provider_name contains a character UTF-8 cannot encode"):
        await store.get_provider_by_name(tenant, f"p{bad}")
    with pytest.raises(ValidationError, match="agent_code"):
        await store.get_agent_by_code_and_tenant_with_provider(tenant, bad)
    with pytest.raises(ValidationError, match="model_name"):
        QueryFilter(tenant_id=tenant, model_name=f"gpt{bad}")
    with pytest.raises(ValidationError, match="model_name"):
        QueryFilter(tenant_id=tenant, model_name="gpt\x00")
    with pytest.raises(ValidationError, match="agent_code must be text"):
        await store.get_agent_by_code_and_tenant(tenant, 42)
    secret = "sk-secret-\ud800-tail"
    with pytest.raises(ValidationError, match="api_key contains a character UTF-8 cannot encode") as info:
        provider(tenant, api_key=SecretStr(secret))
    assert "secret" not in str(info.value) and "tail" not in str(info.value)
    with pytest.raises(ValidationError, match="api_key must not contain NUL"):
        provider(tenant, api_key=SecretStr("sk-\x00"))
    assert await store.list_providers(tenant) == []


async def test_ids_given_as_strings_in_any_case_find_the_same_rows(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """Every store takes ids through one gate: a UUID string, upper or lower case, is the UUID (the memory
    and SQLite stores found nothing with an uppercase string); a string that is no UUID is a ConfigError."""
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s, "hello"))
    c = call(s)
    await store.save_api_call(c)
    p = await store.create_provider(provider(tenant))
    a = await store.create_agent(agent(tenant, p.id))
    T, S, U = str(tenant).upper(), str(s.id).upper(), str(user).upper()
    assert (await store.get_session(T, S)).id == s.id
    assert (await store.get_message(T, str(m.id).upper())).content == "hello"
    assert [x.id for x in await store.get_session_messages(T, S)] == [m.id]
    assert [x.id for x in await store.get_last_messages(T, S, 5)] == [m.id]
    assert [x.id for x in await store.get_user_sessions(T, U)] == [s.id]
    assert (await store.get_api_call(T, str(c.id).upper())).id == c.id
    assert (await store.get_provider(T, str(p.id).upper())).id == p.id
    assert (await store.get_agent(T, str(a.id).upper())).id == a.id
    assert (await store.get_agent_by_code_and_tenant(T, "chat")).id == a.id
    assert await store.count_session_messages(T, S) == 1
    await store.update_message(T, str(m.id).upper(), content="changed")
    assert (await store.update_session(T, S, title="t")).title == "t"
    assert await store.delete_message(T, str(m.id).upper()) is True
    assert await store.delete_agent(tenant_id=T, agent_id=str(a.id).upper()) is True
    assert await store.delete_provider(T, str(p.id).upper()) is True
    assert await store.cleanup_old_records(utc_now() + timedelta(days=1), tenant_id=T) == 1
    assert await store.delete_session(T, S) is True
    bad_calls: tuple[Callable[[], Awaitable[Any]], ...] = (
        lambda: store.get_session("not-a-uuid", s.id),
        lambda: store.get_session(tenant, "not-a-uuid"),
        lambda: store.get_agent_by_code_and_tenant(12, "chat"),
    )
    for bad_call in bad_calls:
        with pytest.raises(ConfigError, match=r"tenant_id|session_id"):
            await bad_call()


# -- where the stores used to disagree ------------------------------------------------------------------
async def test_cleanup_old_records_refuses_a_cutoff_that_is_no_time(store: Store) -> None:
    # PostgreSQL refused it; SQLite and the in-memory store failed with an AttributeError
    with pytest.raises(ConfigError, match="before must be a datetime"):
        await store.cleanup_old_records("yesterday")


async def test_update_message_refuses_an_unknown_status_in_one_wording(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s))
    with pytest.raises(ValidationError, match=r"status must be one of .*got 'done'"):
        await store.update_message(tenant, m.id, status="done")
    assert (await store.get_message(tenant, m.id)).status == "complete"


async def test_provider_in_use_and_session_of_another_user_are_worded_alike(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    p = await store.create_provider(provider(tenant))
    await store.create_agent(agent(tenant, p.id))
    with pytest.raises(ConflictError, match="an agent still uses it"):
        await store.delete_provider(tenant, p.id)
    s = await new_session(store, tenant, user)
    with pytest.raises(TenantMismatchError, match=f"session {s.id} belongs to another tenant or user"):
        await store.create_session(Session(id=s.id, tenant_id=tenant, user_id=uuid.uuid4()))


async def test_a_taken_message_or_call_id_is_worded_alike(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s))
    with pytest.raises(ConflictError, match=f"cannot save message: a message with id {m.id} already exists"):
        await store.save_message(msg(s, id=m.id))
    c = await store.save_api_call(call(s))
    with pytest.raises(ConflictError, match=f"cannot save api call: a record with id {c.id} already exists"):
        await store.save_api_call(call(s, id=c.id))
    assert await store.count_session_messages(tenant, s.id) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_database_error_says_what_was_being_done_with_its_ids(
    kind: str, request: pytest.FixtureRequest, sqlite_path: Path, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    # the words are formatted only when an error needs them: they must still be there then
    from mofa_sdk.errors import PersistenceError

    if kind == "postgres":
        import psycopg

        from mofa_sdk.persistence import PostgresStore

        url = request.getfixturevalue("fresh_pg_url")
        store: Any = await PostgresStore.connect(url)
    else:
        store = await SqliteStore.connect(f"sqlite:///{sqlite_path}")
    try:
        s = await new_session(store, tenant, user)
        if kind == "postgres":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE entity_api_call, entity_message CASCADE")
        else:
            with sqlite3.connect(sqlite_path) as conn:
                conn.executescript(
                    "DROP TABLE entity_message_fts; DROP TABLE entity_api_call; DROP TABLE entity_message;"
                )
        m = msg(s)
        with pytest.raises(PersistenceError, match=f"saving message {m.id} in session {s.id}"):
            await store.save_message(m)
        c = call(s)
        with pytest.raises(PersistenceError, match=f"saving api call {c.id}"):
            await store.save_api_call(c)
        with pytest.raises(PersistenceError, match=f"reading the messages of session {s.id}"):
            await store.get_session_messages(tenant, s.id)
    finally:
        await store.close()
