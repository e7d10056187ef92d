"""PostgreSQL-specific behaviour of PostgresStore (the shared contract lives in persistence/contract/)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from pydantic import SecretStr

from mofa_sdk.entities import LLMApiCall, Message, Provider, QueryFilter, Session
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    NotFoundError,
    PersistenceError,
    TenantMismatchError,
)
from mofa_sdk.persistence import _postgres_sql
from mofa_sdk.persistence._postgres import PostgresStore

SECRET = "s3cret-Pa55word-9d1f"


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = await PostgresStore.connect(pg_url)
    try:
        yield store
    finally:
        await store.close()


async def new_session(store: PostgresStore, tenant: uuid.UUID, user: uuid.UUID) -> Session:
    return await store.create_session(Session(tenant_id=tenant, user_id=user))


def msg(session: Session, content: str = "hello", **kw: object) -> Message:
    return Message(
        session_id=session.id,
        tenant_id=session.tenant_id,
        user_id=session.user_id,
        role="user",
        content=content,
        **kw,  # type: ignore[arg-type]
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_leak(store: PostgresStore) -> None:
    stats = store.pool_stats()
    assert stats["pool_available"] == stats["pool_size"], stats
    assert stats.get("requests_waiting", 0) == 0, stats


# -- connecting --------------------------------------------------------------------------------------
async def test_unreachable_server_is_unavailable_without_password() -> None:
    port = closed_port()
    url = f"postgresql://mofa:{SECRET}@127.0.0.1:{port}/mofa_db"
    with pytest.raises(DatabaseUnavailableError) as info:
        await PostgresStore.connect_with_options(url, connect_timeout=3)
    text = str(info.value)
    assert "127.0.0.1" in text and str(port) in text and "mofa_db" in text
    assert SECRET not in text and SECRET not in repr(info.value)
    assert info.value.__cause__ is None or SECRET not in str(info.value.__cause__)


async def test_missing_database_is_unavailable_and_named(pg_admin_url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_admin_url)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    url = f"postgresql://{params.get('user', 'postgres')}:{SECRET}@{host}:{port}/mofa_no_such_db_x"
    with pytest.raises(DatabaseUnavailableError) as info:
        await PostgresStore.connect(url)
    assert "mofa_no_such_db_x" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["", "mysql://u:pw@localhost/db", "postgresql://u:pw@localhost:notaport/db", "postgresql://h/db?bogus=1"],
)
async def test_malformed_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        await PostgresStore.connect(url)
    assert "pw" not in str(info.value).replace("PostgreSQL", "")


async def test_postgres_scheme_is_accepted(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://")
    store = await PostgresStore.connect("postgres://" + pg_url.removeprefix("postgresql://"))
    try:
        assert store.dialect == "postgres"
        assert await store.get_session(uuid.uuid4(), uuid.uuid4()) is None
    finally:
        await store.close()


async def test_from_env(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        await PostgresStore.from_env()
    monkeypatch.setenv("DATABASE_URL", pg_url)
    async with await PostgresStore.from_env() as store:
        assert await store.get_session(uuid.uuid4(), uuid.uuid4()) is None
    assert store.closed


async def test_shared_returns_one_store_per_url(pg_url: str) -> None:
    a = await PostgresStore.shared(pg_url)
    b = await PostgresStore.shared(pg_url)
    assert a is b
    await a.close()
    c = await PostgresStore.shared(pg_url)
    try:
        assert c is not a and not c.closed
    finally:
        await c.close()


def with_password(url: str) -> tuple[str, str]:
    """``url`` carrying a password (the test server trusts local connections, so any one works)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    netloc = f"{parts.username or 'postgres'}:{SECRET}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc)), SECRET


async def test_repr_and_errors_hide_the_password(pg_url: str) -> None:
    url, password = with_password(pg_url)
    store = await PostgresStore.connect(url)
    try:
        assert password not in repr(store) and "database=" in repr(store)
        await store.close()
        with pytest.raises(PersistenceError, match="closed") as info:
            await store.get_session(uuid.uuid4(), uuid.uuid4())
        assert password not in str(info.value)
    finally:
        await store.close()


# -- messages ----------------------------------------------------------------------------------------
async def test_last_messages_use_the_session_seq_index(
    pg: PostgresStore, pg_url: str, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    sessions = [await new_session(pg, tenant, user) for _ in range(4)]
    ids = [s.id for s in sessions]
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO entity_message (id, session_id, tenant_id, user_id, seq, role, content)"
            " SELECT gen_random_uuid(), s.id, %s, %s, g, 'user', 'message ' || g"
            " FROM unnest(%s::uuid[]) AS s(id), generate_series(1, 5000) AS g",
            (tenant, user, ids),
        )
        await conn.execute("UPDATE entity_session SET last_seq = 5000 WHERE id = ANY(%s)", (ids,))
        await conn.execute("ANALYZE entity_message")
        cur = await conn.execute("EXPLAIN " + _postgres_sql.LAST_MESSAGES_SQL, (ids[1], tenant, 10))
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert "entity_message_session_seq_key" in plan, plan
    assert "Index Scan Backward" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan

    # resuming also looks for stale streaming replies: a partial index keeps that independent of history
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        cur = await conn.execute(
            "EXPLAIN UPDATE entity_message SET status = 'interrupted' WHERE session_id = %s AND tenant_id = %s"
            " AND status = 'streaming' AND update_time < now()",
            (ids[1], tenant),
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
    assert "entity_message_streaming_idx" in plan, plan
    assert "Seq Scan" not in plan, plan

    last = await pg.get_last_messages(tenant, ids[1], 10)
    assert [m.seq for m in last] == list(range(4991, 5001))
    assert last[-1].content == "message 5000"


async def test_concurrent_writers_get_distinct_ordered_seqs(
    pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await new_session(pg, tenant, user)
    saved = await asyncio.gather(*(pg.save_message(msg(session, f"m{i}")) for i in range(40)))
    assert sorted(m.seq for m in saved) == list(range(1, 41))
    batch = await pg.save_messages([msg(session, f"b{i}") for i in range(5)])
    assert [m.seq for m in batch] == [41, 42, 43, 44, 45]
    stored = await pg.get_session_messages(tenant, session.id)
    assert [m.seq for m in stored] == list(range(1, 46))
    assert_no_leak(pg)


async def test_nul_is_escaped_at_rest_and_read_back(
    pg: PostgresStore, pg_url: str, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await new_session(pg, tenant, user)
    plain = await pg.save_message(msg(session, "plain \\ text", metadata={"k": "v"}))
    nul = await pg.save_message(msg(session, "a\x00b\\", metadata={"x\x00": ["\x00"]}))
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute(
            "SELECT id, content, nul_escaped FROM entity_message WHERE id = ANY(%s)", ([plain.id, nul.id],)
        )
        raw = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
    assert raw[plain.id] == ("plain \\ text", False)  # stored verbatim, readable from plain SQL
    assert raw[nul.id] == ("a\\0b\\\\", True)
    got = await pg.get_message(tenant, nul.id)
    assert got is not None and got.content == "a\x00b\\" and got.metadata == {"x\x00": ["\x00"]}

    # a checkpoint on an escaped row keeps it escaped; a new NUL escapes a plain row
    await pg.update_message(tenant, nul.id, content="c\\d")
    await pg.update_message(tenant, plain.id, content="e\x00", metadata={"m": "\\"})
    again = {m.id: m for m in await pg.get_session_messages(tenant, session.id)}
    assert again[nul.id].content == "c\\d" and again[nul.id].metadata == {"x\x00": ["\x00"]}
    assert again[plain.id].content == "e\x00" and again[plain.id].metadata == {"m": "\\"}


async def test_failed_insert_leaves_seq_untouched(
    pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await new_session(pg, tenant, user)
    first = await pg.save_message(msg(session))
    with pytest.raises(ConflictError, match=str(first.id)):
        await pg.save_message(first.model_copy(update={"content": "dup"}))
    with pytest.raises(NotFoundError):
        await pg.save_message(msg(session).model_copy(update={"tenant_id": uuid.uuid4()}))
    second = await pg.save_message(msg(session))
    assert second.seq == 2
    assert_no_leak(pg)


async def test_times_are_utc_whatever_the_session_time_zone(
    pg_url: str, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    tokyo = pg_url + quote(" -cTimeZone=Asia/Tokyo")
    async with await PostgresStore.connect(tokyo) as store:
        when = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
        session = await store.create_session(
            Session(tenant_id=tenant, user_id=user, create_time=when, update_time=when)
        )
        got = await store.get_session(tenant, session.id)
        assert got is not None
        assert got.create_time == when and got.create_time.utcoffset() == timedelta(0)


# -- transactions ------------------------------------------------------------------------------------
async def test_store_transaction_rolls_back_together(
    pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await new_session(pg, tenant, user)
    with pytest.raises(RuntimeError):
        async with pg.transaction() as tx:
            await pg.save_message(msg(session), tx=tx)
            await pg.save_api_call(
                LLMApiCall(
                    tenant_id=tenant, session_id=session.id, user_id=user, model_name="m", status="success"
                ),
                tx=tx,
            )
            raise RuntimeError("boom")
    assert await pg.count_session_messages(tenant, session.id) == 0
    assert await pg.query_api_calls(QueryFilter(tenant_id=tenant)) == []
    assert (await pg.save_message(msg(session))).seq == 1
    assert_no_leak(pg)


async def test_callers_own_connection_joins_and_rolls_back(
    pg: PostgresStore, pg_url: str, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await new_session(pg, tenant, user)
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:  # not autocommit: caller's transaction
        one = await pg.save_message(msg(session, "one"), tx=conn)
        await pg.save_messages([msg(session, "two"), msg(session, "three")], tx=conn)
        await pg.update_session(tenant, session.id, title="renamed", tx=conn)
        cur = await conn.execute("SELECT count(*) FROM entity_message WHERE session_id = %s", (session.id,))
        assert (await cur.fetchone()) == (3,)  # visible inside the caller's transaction
        assert await pg.get_message(tenant, one.id) is None  # and nowhere else yet
        await conn.rollback()
    assert await pg.count_session_messages(tenant, session.id) == 0
    got = await pg.get_session(tenant, session.id)
    assert got is not None and got.title is None

    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await pg.save_message(msg(session, "inside"), tx=conn)
                raise ZeroDivisionError
        await pg.save_message(msg(session, "kept"), tx=conn)
        await conn.commit()
    assert [m.content for m in await pg.get_session_messages(tenant, session.id)] == ["kept"]


async def test_tx_must_be_a_psycopg_connection(pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID) -> None:
    session = await new_session(pg, tenant, user)
    with pytest.raises(ConfigError, match="AsyncConnection"):
        await pg.save_message(msg(session), tx=object())  # type: ignore[arg-type]  # the wrong type on purpose


# -- tenancy, providers, statistics ------------------------------------------------------------------
async def test_session_of_another_tenant_is_refused(
    pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    session = await pg.create_session(Session(tenant_id=tenant, user_id=user, title="mine"))
    stranger = session.model_copy(update={"tenant_id": uuid.uuid4(), "title": "theirs"})
    with pytest.raises(TenantMismatchError):
        await pg.create_session(stranger)
    assert await pg.get_session(stranger.tenant_id, session.id) is None
    got = await pg.get_session(tenant, session.id)
    assert got is not None and got.title == "mine"
    assert await pg.delete_session(stranger.tenant_id, session.id) is False


async def test_api_key_encrypted_at_rest(
    pg: PostgresStore, pg_url: str, tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOFA_SECRET_KEY", "a passphrase for the tests")
    provider = await pg.create_provider(
        Provider(tenant_id=tenant, provider_name="openai", provider_type="openai", api_key=SecretStr(SECRET))
    )
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT api_key FROM entity_provider WHERE id = %s", (provider.id,))
        row = await cur.fetchone()
    assert row is not None and SECRET not in row[0] and row[0].startswith("enc:")
    got = await pg.get_provider(tenant, provider.id)
    assert got is not None and got.api_key is not None and got.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(got)
    monkeypatch.delenv("MOFA_SECRET_KEY")
    with pytest.raises(ConfigError, match="MOFA_SECRET_KEY"):
        await pg.get_provider(tenant, provider.id)


async def test_statistics_percentiles(pg: PostgresStore, tenant: uuid.UUID, user: uuid.UUID) -> None:
    session = await new_session(pg, tenant, user)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    calls = [
        LLMApiCall(
            tenant_id=tenant,
            session_id=session.id,
            user_id=user,
            model_name="a" if i % 2 else "b",
            status="success" if i < 8 else "failed",
            prompt_tokens=i,
            completion_tokens=1,
            total_tokens=i + 1,
            price=0.25,
            latency_ms=(i + 1) * 100,
            time_to_first_token_ms=(i + 1) * 10,
            tokens_per_second=float(i),
            create_time=t0 + timedelta(minutes=i),
        )
        for i in range(10)
    ]
    await pg.save_api_calls(calls)
    stats = await pg.get_statistics(QueryFilter(tenant_id=tenant))
    assert stats.total_calls == 10 and stats.calls_by_status == {"success": 8, "failed": 2}
    assert stats.prompt_tokens == 45 and stats.total_tokens == 55 and stats.total_price == pytest.approx(2.5)
    assert stats.avg_latency_ms == pytest.approx(550) and stats.p50_latency_ms == pytest.approx(550)
    assert stats.p95_latency_ms == pytest.approx(955) and stats.p95_time_to_first_token_ms == pytest.approx(
        95.5
    )
    assert stats.avg_tokens_per_second == pytest.approx(4.5)
    window = QueryFilter(
        tenant_id=tenant,
        model_name="a",
        start_time=t0 + timedelta(minutes=2),
        end_time=t0 + timedelta(minutes=7),
    )
    assert (await pg.get_statistics(window)).total_calls == 2  # minutes 3 and 5; the end is exclusive
    assert [c.create_time for c in await pg.query_api_calls(window)] == [
        calls[5].create_time,
        calls[3].create_time,
    ]
    assert await pg.cleanup_old_records(t0 + timedelta(minutes=5), tenant_id=tenant) == 5
    assert (await pg.get_statistics(QueryFilter(tenant_id=tenant))).total_calls == 5
