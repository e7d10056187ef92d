"""``find_sessions_by_id``: the one lookup behind id prefixes and short ids, on every store."""

from __future__ import annotations

import secrets
import uuid

import pytest

from mofa_sdk.entities import Session
from mofa_sdk.errors import ValidationError
from mofa_sdk.persistence import Store


def _sid(head: str, tail: str) -> uuid.UUID:
    # the middle is random: PostgreSQL and PgBouncer run this on one schema, where a session id is taken once
    return uuid.UUID(f"{head}-{secrets.token_hex(2)}-7000-8000-{tail}")


async def test_prefix_and_short_id_match_only_this_users_sessions(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    a = await store.create_session(Session(id=_sid("0193aaaa", "00000000beef"), tenant_id=tenant, user_id=user))
    b = await store.create_session(Session(id=_sid("0193aaab", "00000000cafe"), tenant_id=tenant, user_id=user))
    # the same ids' lookalikes in another tenant, and of another user, are never found
    await store.create_session(Session(id=_sid("0193aaaa", "11111111beef"), tenant_id=uuid.uuid4(), user_id=user))
    await store.create_session(Session(id=_sid("0193aaaa", "22222222beef"), tenant_id=tenant, user_id=uuid.uuid4()))

    assert [s.id for s in await store.find_sessions_by_id(tenant, user, "0193aaaa")] == [a.id]
    assert {s.id for s in await store.find_sessions_by_id(tenant, user, "0193AAA")} == {a.id, b.id}
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, "cafe")] == [b.id]  # the short id
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, str(a.id))] == [a.id]
    assert await store.find_sessions_by_id(tenant, user, "dead") == []
    assert len(await store.find_sessions_by_id(tenant, user, "0193", limit=1)) == 1


@pytest.mark.parametrize("bad", ["abc", "", "zzzz", "0193%", "01_3", "a" * 37])
async def test_a_bad_fragment_is_refused(store: Store, tenant: uuid.UUID, user: uuid.UUID, bad: str) -> None:
    with pytest.raises(ValidationError):
        await store.find_sessions_by_id(tenant, user, bad)


async def test_fragments_with_dashes_match_where_an_id_has_them(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    # issue 28: the lookup is an index range, not a text match, so dashes must sit where the id has them
    a = await store.create_session(Session(id=_sid("0193cccc", "0000abcd1234"), tenant_id=tenant, user_id=user))
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, "0193cccc-")] == [a.id]
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, str(a.id)[:14])] == [a.id]
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, "8000-0000abcd1234")] == [a.id]
    assert [s.id for s in await store.find_sessions_by_id(tenant, user, "d1234")] == [a.id]
    # a dash where no id has one: no match, and no error
    assert await store.find_sessions_by_id(tenant, user, "0193-ccc") == []
    assert await store.find_sessions_by_id(tenant, user, "abcd-1234") == []
