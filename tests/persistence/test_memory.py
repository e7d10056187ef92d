"""InMemoryStore is the SQLite store on a private ``:memory:`` database: what is its own beside the contract."""

from __future__ import annotations

import gc
import uuid
import warnings

from mofa_sdk.entities import Message, Session
from mofa_sdk.persistence import InMemoryStore, SqliteStore


async def test_each_store_has_a_database_of_its_own() -> None:
    a, b = InMemoryStore(), InMemoryStore()
    tenant = uuid.uuid4()
    try:
        s = await a.create_session(Session(tenant_id=tenant, user_id=tenant))
        assert await a.get_session(tenant, s.id) is not None
        assert await b.get_session(tenant, s.id) is None
        assert isinstance(a, SqliteStore) and a.dialect == "memory"
        assert all(applied is not None for _, applied in await b.migration_status())
    finally:
        await a.close()
        await b.close()


async def test_full_text_search_is_the_sqlite_one() -> None:
    store = InMemoryStore()
    tenant = uuid.uuid4()
    try:
        s = await store.create_session(Session(tenant_id=tenant, user_id=tenant))
        await store.save_message(Message(session_id=s.id, tenant_id=tenant, user_id=tenant, role="user",
                                         content="Ships of the line"))
        assert [m.content for m in await store.search_messages(tenant, tenant, "SHIPS line")] == ["Ships of the line"]
        assert await store.search_messages(tenant, tenant, "ship") == []  # whole words, as FTS5 matches them
    finally:
        await store.close()


async def test_a_store_dropped_without_close_goes_quietly() -> None:
    """A throw-away store need not be closed: its connection is released without aiosqlite's warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = InMemoryStore()
        tenant = uuid.uuid4()
        await store.create_session(Session(tenant_id=tenant, user_id=tenant))
        del store
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
