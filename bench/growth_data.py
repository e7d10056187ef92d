"""The growth bench's databases: a skewed many-tenant mofa database of a given size, built with COPY.

``build(admin_url, messages)`` makes (or reuses) the database ``mofa_bench_growth_<messages>``: migrated by the
library, its secondary indexes dropped, the rows COPYed in, the indexes rebuilt from their own definitions and
the tables analysed. The shape follows the issue (#28): at 10 M messages, 1,000 tenants, one of them with
100,000 sessions and a user of it with about 20,000; ten messages a session, an api-call row per reply, a year
of history. Smaller sizes keep the proportions (the big tenant a tenth of the sessions, its big user a fifth
of those). Message texts come from a fixed pool with one common word (in about 30 % of messages), a mid one
(1 %) and a rare one (0.02 %), so that search meets each kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

__all__ = ["BIG_TENANT", "BIG_USER", "WORDS", "Built", "build", "database_name", "drop"]

BIG_TENANT = uuid.UUID("00000000-0000-4000-8000-0000000b1700")
BIG_USER = uuid.UUID("00000000-0000-4000-8000-0000000b1701")
#: the searched words: common, mid, rare
WORDS = ("harbor", "lantern", "quokka")
#: messages a session, and the end of the history (fixed, so two builds are the same database)
PER_SESSION = 10
END = datetime(2026, 6, 1, tzinfo=UTC)
DAYS = 365
_MODELS = ("gpt-4o-mini", "llama-3.1-8b", "qwen2.5-7b")
_FILLER = (
    "the", "a", "to", "of", "and", "in", "is", "it", "you", "that", "for", "on", "with", "as", "are", "this",
    "be", "at", "or", "have", "from", "by", "not", "but", "what", "all", "were", "we", "when", "your", "can",
    "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other",
    "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like", "him",
    "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long",
    "down", "day", "did", "get", "come", "made", "may", "part",
)


@dataclass(frozen=True)
class Built:
    """A database the bench measures: its URL, what it holds, and how long building it took."""

    url: str
    messages: int
    sessions: int
    tenants: int
    big_user_sessions: int
    build_seconds: float | None  # None: not recorded (a database built by an older generator)
    reused: bool = False  # built by an earlier run


def database_name(messages: int) -> str:
    return f"mofa_bench_growth_{messages}"


def _url_of(admin_url: str, dbname: str) -> str:
    """``admin_url`` (a postgresql:// URL) with its database replaced."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + dbname))


def _texts(rng: random.Random) -> list[str]:
    """A pool of 5,000 message texts: 30 % hold the common word, 1 % the mid one, 0.02 % (one) the rare one."""
    out = []
    for i in range(5000):
        words = rng.choices(_FILLER, k=rng.randint(8, 40))
        if i % 10 < 3:
            words.insert(rng.randrange(len(words)), WORDS[0])
        if i % 100 == 7:
            words.insert(rng.randrange(len(words)), WORDS[1])
        if i == 4321:
            words.insert(rng.randrange(len(words)), WORDS[2])
        out.append(" ".join(words))
    return out


def _uuid7(ms: int, rng: random.Random) -> uuid.UUID:
    """A version-7 id for a time in milliseconds (what ``mofa_sdk.ids.new_id`` makes)."""
    rand = rng.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def _shape(messages: int) -> tuple[int, int, int]:
    """(sessions, tenants, the big user's sessions) for ``messages``."""
    sessions = max(20, messages // PER_SESSION)
    tenants = max(3, min(1000, sessions // 1000))
    return sessions, tenants, max(2, sessions // 50)


def _ts(dt: datetime) -> str:
    return dt.isoformat()


async def _copy_rows(admin_url: str, dbname: str, messages: int, seed: int) -> tuple[int, int, int]:
    rng = random.Random(seed)
    texts = _texts(rng)
    n_sessions, n_tenants, big_user_n = _shape(messages)
    big_tenant_n = max(big_user_n + 1, n_sessions // 10)
    tenants = [BIG_TENANT] + [uuid.UUID(int=rng.getrandbits(128) | 1 << 78) for _ in range(n_tenants - 1)]
    start_ms = int((END - timedelta(days=DAYS)).timestamp() * 1000)
    span_ms = DAYS * 86_400_000
    url = _url_of(admin_url, dbname)
    # one connection a table: a connection runs one COPY at a time
    async with (
        await _loader(url) as s_conn, await _loader(url) as m_conn, await _loader(url) as c_conn,
        s_conn.cursor().copy(
            "COPY entity_session (id, tenant_id, user_id, title, last_seq, create_time, update_time) FROM STDIN"
        ) as s_copy,
        m_conn.cursor().copy(
            "COPY entity_message (id, session_id, tenant_id, user_id, seq, role, content, create_time,"
            " update_time) FROM STDIN") as m_copy,
        c_conn.cursor().copy(
            "COPY entity_api_call (id, tenant_id, session_id, user_id, response_message_id, model_name, status,"
            " prompt_tokens, completion_tokens, total_tokens, price, latency_ms, time_to_first_token_ms,"
            " tokens_per_second, create_time) FROM STDIN") as c_copy,
    ):
        users: dict[uuid.UUID, list[uuid.UUID]] = {}
        for k in range(n_sessions):
            if k < big_user_n:
                tenant, user = BIG_TENANT, BIG_USER
            elif k < big_tenant_n:
                tenant = BIG_TENANT  # its other users have about 50 sessions each
                pool = users.setdefault(tenant, [])
                if not pool or rng.random() < 1 / 50:
                    pool.append(uuid.UUID(int=rng.getrandbits(128) | 1 << 78))
                user = rng.choice(pool)
            else:
                tenant = tenants[1 + k % (n_tenants - 1)]
                pool = users.setdefault(tenant, [])
                if not pool or rng.random() < 1 / 10:
                    pool.append(uuid.UUID(int=rng.getrandbits(128) | 1 << 78))
                user = rng.choice(pool)
            began = start_ms + rng.randrange(span_ms - 3_600_000)
            sid = _uuid7(began, rng)
            t0 = datetime.fromtimestamp(began / 1000, UTC)
            last = t0 + timedelta(seconds=30 * PER_SESSION)
            await s_copy.write_row((sid, tenant, user, f"session {k}", PER_SESSION, _ts(t0), _ts(last)))
            for seq in range(1, PER_SESSION + 1):
                at = t0 + timedelta(seconds=30 * seq)
                mid = _uuid7(began + 30_000 * seq, rng)
                role = "user" if seq % 2 else "assistant"
                text = texts[rng.randrange(len(texts))]
                await m_copy.write_row((mid, sid, tenant, user, seq, role, text, _ts(at), _ts(at)))
                if role == "assistant":
                    prompt, completion = rng.randint(50, 3000), rng.randint(10, 800)
                    ok = rng.random() < 0.95
                    await c_copy.write_row((
                        _uuid7(began + 30_000 * seq, rng), tenant, sid, user, mid, _MODELS[seq % 3],
                        "success" if ok else rng.choice(("failed", "timeout", "cancelled")),
                        prompt, completion, prompt + completion, round(completion * 2e-6, 8),
                        rng.randint(200, 9000), rng.randint(50, 1500), round(rng.uniform(5, 120), 2), _ts(at),
                    ))
    return n_sessions, n_tenants, big_user_n


async def _loader(url: str) -> psycopg.AsyncConnection[object]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    # no per-row foreign-key triggers while loading (the rows are consistent by construction); only a
    # superuser may, and without it the load is just slower
    with contextlib.suppress(psycopg.Error):
        await conn.execute("SET session_replication_role = replica")
    return conn


async def _built_before(admin_url: str, dbname: str) -> float | None:
    """How long the complete database ``dbname`` took to build (seconds; 0 when not recorded), or None when
    there is none."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if await cur.fetchone() is None:
            return None
    async with await psycopg.AsyncConnection.connect(_url_of(admin_url, dbname), autocommit=True) as conn:
        cur = await conn.execute("SELECT to_regclass('mofa_bench_built') IS NOT NULL")
        row = await cur.fetchone()
        if not (row and row[0]):
            return None
        cur = await conn.execute("SELECT * FROM mofa_bench_built")
        names = [c.name for c in cur.description or []]
        found = await cur.fetchone()
        return float(found[names.index("build_seconds")] or 0) if found and "build_seconds" in names else 0.0


async def drop(admin_url: str, messages: int) -> None:
    dbname = database_name(messages)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


async def build(
    admin_url: str, messages: int, *, seed: int = 28, reuse: bool = True, dbname: str | None = None
) -> Built:
    """The database of ``messages`` messages (reused when a complete one exists and ``reuse``), named
    ``dbname`` (default :func:`database_name`)."""
    from mofa_sdk.persistence import PostgresStore

    dbname = dbname or database_name(messages)
    url = _url_of(admin_url, dbname)
    sessions, tenants, big = _shape(messages)
    before = await _built_before(admin_url, dbname) if reuse else None
    if before is not None:
        return Built(url, sessions * PER_SESSION, sessions, tenants, big, before or None, reused=True)
    t0 = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    store = await PostgresStore.connect(url)  # the library's own migrations make the schema
    await store.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # secondary indexes are rebuilt after the load from their own definitions (faster than maintaining them)
        cur = await conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname IN ('entity_session', 'entity_message',"
            " 'entity_api_call') AND t.relnamespace = 'public'::regnamespace AND NOT EXISTS ("
            " SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        )
        indexes = await cur.fetchall()
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
    await _copy_rows(admin_url, dbname, messages, seed)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            await conn.execute(definition)
        await conn.execute("VACUUM (ANALYZE) entity_session, entity_message, entity_api_call")
        seconds = round(time.perf_counter() - t0, 1)
        await conn.execute("CREATE TABLE mofa_bench_built (messages bigint, build_seconds double precision,"
                           " built_at timestamptz DEFAULT now())")
        await conn.execute("INSERT INTO mofa_bench_built (messages, build_seconds) VALUES (%s, %s)",
                           (sessions * PER_SESSION, seconds))
    return Built(url, sessions * PER_SESSION, sessions, tenants, big, seconds)


if __name__ == "__main__":  # python bench/growth_data.py ADMIN_URL MESSAGES [DBNAME]: build (or reuse) one
    import sys

    print(asyncio.run(build(sys.argv[1], int(sys.argv[2]), dbname=sys.argv[3] if len(sys.argv) > 3 else None)))
