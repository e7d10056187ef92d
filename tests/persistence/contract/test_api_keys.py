"""The api-key part of the store contract, run against every store; and the key helpers on top of it."""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from mofa_sdk.entities import ApiKey
from mofa_sdk.errors import ConflictError, ValidationError
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import (
    API_KEY_PREFIX,
    Store,
    authenticate_api_key,
    hash_api_key,
    issue_api_key,
    mask_api_key,
)


def _key(tenant: uuid.UUID, user: uuid.UUID, secret: str = "x", **kw: Any) -> ApiKey:
    return ApiKey(tenant_id=tenant, user_id=user, key_hash=hash_api_key(secret + str(uuid.uuid4())),
                  key_hint="abcd", **kw)


async def test_create_read_list_revoke(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    first = await store.create_api_key(_key(tenant, user, name="ci"))
    second = await store.create_api_key(_key(tenant, user, create_time=utc_now() + timedelta(seconds=1)))
    other = await store.create_api_key(_key(uuid.uuid4(), user))
    got = await store.get_api_key_by_hash(first.key_hash)
    assert got == first and got.name == "ci" and not got.revoked and got.last_used_time is None
    assert [k.id for k in await store.list_api_keys(tenant)] == [second.id, first.id]  # newest first
    # another tenant's key can be neither revoked nor touched through this tenant
    assert await store.revoke_api_key(tenant, other.id) is False
    await store.touch_api_key(tenant, other.id, utc_now())
    assert (await store.get_api_key_by_hash(other.key_hash)).last_used_time is None
    assert await store.revoke_api_key(tenant, first.id) is True
    assert await store.revoke_api_key(tenant, first.id) is False  # once
    revoked = await store.get_api_key_by_hash(first.key_hash)
    assert revoked.revoked and revoked.revoke_time is not None
    assert await store.get_api_key_by_hash(hash_api_key("never issued")) is None


async def test_touch_records_last_use(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    k = await store.create_api_key(_key(tenant, user))
    when = utc_now().replace(microsecond=123000)
    await store.touch_api_key(tenant, k.id, when)
    got = await store.get_api_key_by_hash(k.key_hash)
    assert got.last_used_time == when
    await store.touch_api_key(tenant, uuid.uuid4(), when)  # a key that is gone: no error
    await store.touch_api_key(tenant, k.id, when.replace(tzinfo=None))  # naive: taken as UTC, handed back in UTC
    got = await store.get_api_key_by_hash(k.key_hash)
    assert got.last_used_time == when and got.last_used_time.utcoffset() == timedelta(0)


async def test_duplicate_hash_or_id_is_a_conflict_and_writes_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    k = await store.create_api_key(_key(tenant, user))
    with pytest.raises(ConflictError):
        await store.create_api_key(ApiKey(tenant_id=tenant, user_id=user, key_hash=k.key_hash, key_hint="zzzz"))
    with pytest.raises(ConflictError):
        await store.create_api_key(k.model_copy(update={"key_hash": hash_api_key(str(uuid.uuid4()))}))
    assert [x.id for x in await store.list_api_keys(tenant)] == [k.id]


async def test_issue_and_authenticate(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    row, key = await issue_api_key(store, tenant, user, "laptop")
    assert key.startswith(API_KEY_PREFIX) and len(key) >= len(API_KEY_PREFIX) + 43
    assert row.key_hash == hash_api_key(key) and key not in repr(row) and row.key_hash not in repr(row)
    assert mask_api_key(row) == f"{API_KEY_PREFIX}…{key[-4:]}"
    got = await authenticate_api_key(store, key)
    assert got is not None and got.id == row.id and got.tenant_id == tenant and got.user_id == user
    assert (await store.get_api_key_by_hash(row.key_hash)).last_used_time is not None
    assert await authenticate_api_key(store, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert await authenticate_api_key(store, "Bearer " + key) is None
    await store.revoke_api_key(tenant, row.id)
    assert await authenticate_api_key(store, key) is None
    # the stored row holds no trace of the key
    stored = (await store.list_api_keys(tenant))[0].model_dump_json()
    assert key not in stored and key[len(API_KEY_PREFIX):-4] not in stored


def test_api_key_rejects_a_malformed_hash() -> None:
    with pytest.raises(ValidationError, match="key_hash"):
        ApiKey(tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), key_hash="mofa_sk_plaintext", key_hint="text")
