"""Where the stores used to disagree: one wording of each error, and errors that say what was being done.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from mofa_sdk.entities import Session
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    TenantMismatchError,
    ValidationError,
)
from mofa_sdk.persistence import SqliteStore, Store
from tests.support.builders import agent, call, msg, new_session, provider


# -- where the stores used to disagree ------------------------------------------------------------------
async def test_cleanup_old_records_refuses_a_cutoff_that_is_no_time(store: Store) -> None:
    # PostgreSQL refused it; SQLite and the in-memory store failed with an AttributeError
    with pytest.raises(ConfigError, match="before must be a datetime"):
        await store.cleanup_old_records("yesterday")  # type: ignore[arg-type]


async def test_update_message_refuses_an_unknown_status_in_one_wording(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s))
    with pytest.raises(ValidationError, match=r"status must be one of .*got 'done'"):
        await store.update_message(tenant, m.id, status="done")  # type: ignore[arg-type]
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
