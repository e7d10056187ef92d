"""Transactions: writes grouped by ``tx=``; the embedded stores' own rules (savepoints, tx arguments).

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mofa_sdk.entities import QueryFilter, Session
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
)
from mofa_sdk.persistence import SqliteStore, Store
from tests.support.builders import call, msg, new_session


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


async def test_nested_transaction_is_a_savepoint(
    local_store: SqliteStore, tenant: uuid.UUID, user: uuid.UUID
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
    local_store: SqliteStore, tenant: uuid.UUID, user: uuid.UUID
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


async def test_bad_tx_arguments(local_store: SqliteStore, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(local_store, tenant, user)
    with pytest.raises(ConfigError, match="tx"):
        await local_store.save_message(msg(s), tx=object())  # type: ignore[arg-type]
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
