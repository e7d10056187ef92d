"""The schema and connecting: migrations, ``connect_store`` and its URLs.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mofa_sdk.errors import (
    ConfigError,
)
from mofa_sdk.persistence import InMemoryStore, SqliteStore, Store, connect_store
from tests.support.builders import msg, new_session


# -- schema -----------------------------------------------------------------------------------------
async def test_migrate_is_idempotent_and_status_lists_applied(store: Store) -> None:
    assert await store.migrate() == []
    status = await store.migration_status()
    assert "0001_init" in [name for name, _ in status]
    assert all(applied is not None for _, applied in status)


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
