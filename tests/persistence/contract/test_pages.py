"""Keyset pages, usage in SQL and batched retention (issue 28), on every store of the ``store`` fixture."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mofa_sdk.entities import QueryFilter, Session
from mofa_sdk.errors import ConfigError, ValidationError
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Cursor, Store
from tests.support.builders import call, msg, new_session


async def _sessions(store: Store, tenant: uuid.UUID, user: uuid.UUID, n: int, *, ties: bool = False) -> list[Session]:
    """``n`` sessions, most recently active first; with ``ties`` they pair up on one update time."""
    base = utc_now() - timedelta(days=1)
    made = []
    for i in range(n):
        when = base + timedelta(minutes=(i // 2) if ties else i)
        made.append(await new_session(store, tenant, user, title=f"s{i}", create_time=base, update_time=when))
    return sorted(made, key=lambda s: (s.update_time, s.id), reverse=True)


async def test_session_pages_walk_every_session_once(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    expected = await _sessions(store, tenant, user, 7, ties=True)
    await new_session(store, tenant, uuid.uuid4())  # another user's
    await new_session(store, uuid.uuid4(), user)  # another tenant's
    seen: list[uuid.UUID] = []
    page = await store.list_user_sessions(tenant, user, limit=3)
    pages = 1
    while page.next is not None:
        assert len(page.items) == 3
        seen += [s.id for s in page.items]
        page = await store.list_user_sessions(tenant, user, after=page.next, limit=3)
        pages += 1
    seen += [s.id for s in page.items]
    assert pages == 3
    assert seen == [s.id for s in expected]
    # the same order as the OFFSET listing
    assert [s.id for s in await store.get_user_sessions(tenant, user, limit=10)] == seen


async def test_a_full_last_page_has_no_next(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    await _sessions(store, tenant, user, 4)
    first = await store.list_user_sessions(tenant, user, limit=2)
    assert first.next is not None
    second = await store.list_user_sessions(tenant, user, after=first.next, limit=2)
    assert (len(second.items), second.next) == (2, None)
    empty = await store.list_user_sessions(uuid.uuid4(), user)
    assert (empty.items, empty.next) == ([], None)


async def test_cursor_token_round_trips_and_refuses_junk(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    await _sessions(store, tenant, user, 3)
    first = await store.list_user_sessions(tenant, user, limit=1)
    assert first.next is not None
    again = Cursor.parse(first.next.token())
    assert again == first.next
    via_token = await store.list_user_sessions(tenant, user, after=again, limit=5)
    direct = await store.list_user_sessions(tenant, user, after=first.next, limit=5)
    assert [s.id for s in via_token.items] == [s.id for s in direct.items] and len(direct.items) == 2
    for junk in ("", "not-a-cursor", "%%%", Cursor(datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()).token()[:-3]):
        with pytest.raises(ValidationError, match="cursor"):
            Cursor.parse(junk)
    with pytest.raises(ConfigError, match="after must be a Cursor"):
        await store.list_user_sessions(tenant, user, after="abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit"):
        await store.list_user_sessions(tenant, user, limit=0)


async def test_transcript_pages_by_seq(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    saved = await store.save_messages([msg(s, f"m{i}") for i in range(5)])
    first = await store.get_session_messages_after(tenant, s.id, limit=2)
    assert [m.content for m in first] == ["m0", "m1"]
    rest = await store.get_session_messages_after(tenant, s.id, after_seq=first[-1].seq, limit=10)
    assert [m.content for m in rest] == ["m2", "m3", "m4"]
    assert await store.get_session_messages_after(tenant, s.id, after_seq=saved[-1].seq) == []
    assert await store.get_session_messages_after(uuid.uuid4(), s.id) == []  # another tenant sees nothing
    with pytest.raises(ConfigError):
        await store.get_session_messages_after(tenant, s.id, after_seq=-1)


async def test_api_call_pages_newest_first(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    base = utc_now() - timedelta(hours=1)
    # two calls share each time: the id breaks the tie
    calls = [call(s, create_time=base + timedelta(minutes=i // 2)) for i in range(5)]
    await store.save_api_calls(calls)
    expected = [c.id for c in sorted(calls, key=lambda c: (c.create_time, c.id), reverse=True)]
    query = QueryFilter(tenant_id=tenant, limit=2)
    seen: list[uuid.UUID] = []
    page = await store.list_api_calls(query)
    while True:
        seen += [c.id for c in page.items]
        if page.next is None:
            break
        page = await store.list_api_calls(query, after=page.next)
    assert seen == expected
    assert [c.id for c in await store.query_api_calls(QueryFilter(tenant_id=tenant))] == expected
    with pytest.raises(ValidationError, match="offset"):
        await store.list_api_calls(QueryFilter(tenant_id=tenant, offset=1))


async def test_usage_breakdown_groups_in_the_database(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    agent = uuid.uuid4()
    day = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # a Wednesday
    await store.save_api_calls([
        call(s, model_name="a", agent_id=agent, total_tokens=10, latency_ms=100, create_time=day),
        call(s, model_name="a", agent_id=agent, total_tokens=20, latency_ms=300, status="failed",
             create_time=day + timedelta(minutes=10)),
        call(s, model_name="b", total_tokens=5, status="cancelled", time_to_first_token_ms=40,
             create_time=day + timedelta(days=1, hours=2)),
    ])  # fmt: skip
    query = QueryFilter(tenant_id=tenant)
    by_model = await store.usage_breakdown(query, "model")
    assert [(g.model_name, g.calls, g.errors, g.cancelled, g.total_tokens) for g in by_model] == [
        ("a", 2, 1, 0, 30), ("b", 1, 0, 1, 5),
    ]  # fmt: skip
    assert (by_model[0].p50_latency_ms, by_model[0].p95_latency_ms) == (200.0, 290.0)
    assert by_model[1].p50_time_to_first_token_ms == 40.0 and by_model[1].p50_latency_ms is None
    by_agent = await store.usage_breakdown(query, "agent")
    assert [(g.agent_id, g.calls) for g in by_agent] == [(agent, 2), (None, 1)]
    hours = await store.usage_breakdown(query, "hour")
    assert [(g.start, g.calls) for g in hours] == [
        (datetime(2026, 3, 4, 10, tzinfo=UTC), 2), (datetime(2026, 3, 5, 12, tzinfo=UTC), 1),
    ]  # fmt: skip
    days = await store.usage_breakdown(query, "day")
    assert [(g.start, g.calls) for g in days] == [
        (datetime(2026, 3, 4, tzinfo=UTC), 2), (datetime(2026, 3, 5, tzinfo=UTC), 1),
    ]  # fmt: skip
    weeks = await store.usage_breakdown(query, "week")
    assert [(g.start, g.calls) for g in weeks] == [(datetime(2026, 3, 2, tzinfo=UTC), 3)]  # its Monday
    only_b = await store.usage_breakdown(QueryFilter(tenant_id=tenant, model_name="b"), "day")
    assert [g.calls for g in only_b] == [1]
    assert await store.usage_breakdown(QueryFilter(tenant_id=uuid.uuid4()), "model") == []
    with pytest.raises(ValidationError, match="grouped by"):
        await store.usage_breakdown(query, "month")  # type: ignore[arg-type]


async def test_statistics_count_each_status_in_one_pass(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    statuses = ["success", "success", "failed", "timeout", "rate_limited", "cancelled"]
    await store.save_api_calls([call(s, status=st, prompt_tokens=1, total_tokens=3, price=0.5) for st in statuses])
    stats = await store.get_statistics(QueryFilter(tenant_id=tenant))
    assert stats.calls_by_status == {"success": 2, "failed": 1, "timeout": 1, "rate_limited": 1, "cancelled": 1}
    assert (stats.total_calls, stats.prompt_tokens, stats.total_tokens, stats.total_price) == (6, 6, 18, 3.0)
    empty = await store.get_statistics(QueryFilter(tenant_id=uuid.uuid4()))
    assert (empty.total_calls, empty.calls_by_status, empty.avg_latency_ms) == (0, {}, None)


async def test_cleanup_runs_in_batches(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    old = utc_now() - timedelta(days=30)
    await store.save_api_calls([call(s, create_time=old + timedelta(seconds=i)) for i in range(7)])
    keep = await store.save_api_call(call(s))
    other = await new_session(store, uuid.uuid4(), user)
    await store.save_api_call(call(other, create_time=old))
    # 7 old rows in batches of 3: three batches, every old row of the tenant gone, the new one kept
    assert await store.cleanup_old_records(utc_now() - timedelta(days=1), tenant_id=tenant, batch_size=3) == 7
    assert [c.id for c in await store.query_api_calls(QueryFilter(tenant_id=tenant))] == [keep.id]
    assert len(await store.query_api_calls(QueryFilter(tenant_id=other.tenant_id))) == 1
    for bad in (0, -1, True, 1.5, 10**7):
        with pytest.raises(ConfigError, match="batch_size"):
            await store.cleanup_old_records(utc_now(), tenant_id=tenant, batch_size=bad)  # type: ignore[arg-type]
