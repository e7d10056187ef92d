"""Sessions: upsert, ownership, listing, updating, cascading deletes.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from mofa_sdk.entities import Session
from mofa_sdk.errors import (
    ConfigError,
    NotFoundError,
    TenantMismatchError,
    ValidationError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Store
from tests.support.builders import call, msg, new_session, same


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
