"""Tenant isolation: another tenant finds and changes nothing.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from mofa_sdk.entities import QueryFilter
from mofa_sdk.errors import (
    NotFoundError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Store
from tests.support.builders import agent, call, msg, new_session, provider


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
