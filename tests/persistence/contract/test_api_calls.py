"""Api calls: saving, filtering, statistics, cleanup.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mofa_sdk.entities import QueryFilter
from mofa_sdk.errors import (
    ConflictError,
    NotFoundError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Store
from tests.support.builders import call, msg, new_session, same


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
