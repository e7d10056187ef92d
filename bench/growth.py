"""Growth: every read path on a large skewed database against the same on a small one (issue 28).

Two databases built by ``growth_data`` (COPY): a small one (20,000 messages; 2,000 with ``--quick``) and a large
one of ``MOFA_BENCH_MESSAGES`` messages (default 200,000, a couple of minutes; 20,000 with ``--quick``;
``MOFA_BENCH_MESSAGES=10000000`` for the full curve, which builds once and is kept for later runs). Each
operation is timed in two plan modes: ``fresh`` (nothing prepared: planned for its values every call) and
``warm`` (one connection, psycopg's default prepare threshold, timed after 20 calls: what a long-running
service sees once PostgreSQL may have switched to a generic plan). Ratios are large / small. Retention of 10 %
of the api calls is timed last, in batches, with a turn running beside it; the rows are put back afterwards.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg
from _common import Mode
from growth_data import BIG_TENANT, BIG_USER, END, WORDS, Built, build

from mofa_sdk.entities import LLMApiCall, Message, QueryFilter, Session
from mofa_sdk.persistence import Cursor, PostgresStore

Op = Callable[[PostgresStore], Awaitable[Any]]
#: the issue's target: large / small at most this, or the large one at most TARGET_MS
TARGET_RATIO, TARGET_MS = 1.5, 5.0


async def _probe(url: str, deep: int) -> dict[str, Any]:
    """What the operations need from a database: a session of the big user, its short id, a deep cursor."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT id, update_time FROM entity_session WHERE tenant_id = %s AND user_id = %s"
            " ORDER BY update_time DESC, id DESC OFFSET %s LIMIT 1", (BIG_TENANT, BIG_USER, deep))
        row = await cur.fetchone()
        assert row is not None, "the big user has fewer sessions than the deep page"
        cur = await conn.execute(
            "SELECT id FROM entity_session WHERE tenant_id = %s AND user_id = %s ORDER BY id LIMIT 1 OFFSET 1",
            (BIG_TENANT, BIG_USER))
        some = await cur.fetchone()
        assert some is not None
    return {"cursor": Cursor(row[1], row[0]), "session": some[0]}


def _ops(probe: dict[str, Any], deep: int) -> dict[str, Op]:
    t, u, sid = BIG_TENANT, BIG_USER, probe["session"]
    month = QueryFilter(tenant_id=t, start_time=END - timedelta(days=30), end_time=END)

    async def usage_30d(s: PostgresStore) -> None:  # what `mofa usage --since 30d` asks the store
        await s.get_statistics(month)
        await s.usage_breakdown(month, "agent")
        await s.usage_breakdown(month, "day")

    return {
        "listing, first page (keyset)": lambda s: s.list_user_sessions(t, u, limit=50),
        "listing, deep page (keyset)": lambda s: s.list_user_sessions(t, u, after=probe["cursor"], limit=50),
        "listing, deep page (OFFSET: O(offset), kept)": lambda s: s.get_user_sessions(t, u, offset=deep, limit=50),
        "transcript page": lambda s: s.get_session_messages_after(t, sid, limit=50),
        "resume (last 20 messages)": lambda s: s.get_last_messages(t, sid, 20),
        f"search, common word ({WORDS[0]})": lambda s: s.search_messages(t, u, WORDS[0]),
        f"search, mid word ({WORDS[1]})": lambda s: s.search_messages(t, u, WORDS[1]),
        f"search, rare word ({WORDS[2]})": lambda s: s.search_messages(t, u, WORDS[2]),
        "statistics, one month, big tenant": lambda s: s.get_statistics(month),
        "`mofa usage --since 30d` (stats + 2 groupings)": usage_30d,
        "id lookup, short id (suffix)": lambda s: s.find_sessions_by_id(t, u, str(sid)[-8:]),
        "id lookup, prefix": lambda s: s.find_sessions_by_id(t, u, str(sid)[:13]),
    }  # fmt: skip


async def _stores(url: str) -> dict[str, PostgresStore]:
    return {
        # fresh: never prepared (prepare_threshold=None), so every call is planned for its own values
        "fresh_ms": await PostgresStore.connect(url, migrate=False, prepare_threshold=None, max_connections=1),
        # warm: one connection with psycopg's default threshold (5), timed after 20 calls
        "warm_ms": await PostgresStore.connect(url, migrate=False, max_connections=1),
    }


async def _measure(dbs: dict[str, Built], ops: dict[str, dict[str, Op]], n: int) -> dict[str, dict[str, Any]]:
    """Median ms of each op on each database in each plan mode. The two databases are sampled alternately,
    call by call, so that the machine's drift (other work on it) hits both alike."""
    stores = {label: await _stores(db.url) for label, db in dbs.items()}
    out: dict[str, dict[str, Any]] = {label: {} for label in dbs}
    try:
        for name in ops["small"]:
            for mode in ("fresh_ms", "warm_ms"):
                samples: dict[str, list[float]] = {label: [] for label in dbs}
                for label in dbs:
                    for _ in range(20 if mode == "warm_ms" else 1):
                        await ops[label][name](stores[label][mode])
                for _ in range(n):
                    for label in dbs:
                        t0 = time.perf_counter()
                        await ops[label][name](stores[label][mode])
                        samples[label].append(time.perf_counter() - t0)
                for label in dbs:
                    row = out[label].setdefault(name, {})
                    row[mode] = round(statistics.median(samples[label]) * 1000, 3)
                    # the fastest call: what the plan costs when the (shared) machine does not get in the way
                    row[mode.replace("_ms", "_min_ms")] = round(min(samples[label]) * 1000, 3)
    finally:
        for pair in stores.values():
            for store in pair.values():
                await store.close()
    return out


async def _sizes(url: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT pg_database_size(current_database()), pg_total_relation_size('entity_session'),"
            " pg_total_relation_size('entity_message'), pg_total_relation_size('entity_api_call')")
        row = await cur.fetchone()
        assert row is not None
    mb = [round(v / 2**20, 1) for v in row]
    return {"database_mb": mb[0], "sessions_mb": mb[1], "messages_mb": mb[2], "api_calls_mb": mb[3]}


async def _retention(db: Built, n_turns_before: int) -> dict[str, Any]:
    """Delete the oldest 10 % of api calls in batches while a turn loop runs; put the rows back after."""
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM entity_api_call")
        total = (await cur.fetchone() or [0])[0]
        cur = await conn.execute(
            "SELECT create_time FROM entity_api_call ORDER BY create_time OFFSET %s LIMIT 1", (total // 10,))
        cutoff = (await cur.fetchone() or [END])[0]
        await conn.execute("DROP TABLE IF EXISTS mofa_bench_saved_calls")
        await conn.execute(
            "CREATE TABLE mofa_bench_saved_calls AS SELECT * FROM entity_api_call WHERE create_time < %s", (cutoff,))
    store = await PostgresStore.connect(db.url, migrate=False, max_connections=4)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session = await store.create_session(Session(tenant_id=tenant, user_id=user))

    async def turn() -> float:
        t0 = time.perf_counter()
        await store.save_message(Message(session_id=session.id, tenant_id=tenant, user_id=user, role="user",
                                         content="hello"))
        reply = await store.save_message(Message(session_id=session.id, tenant_id=tenant, user_id=user,
                                                 role="assistant", content="hi there"))
        await store.save_api_call(LLMApiCall(tenant_id=tenant, session_id=session.id, user_id=user,
                                             response_message_id=reply.id, model_name="m", status="success"))
        return (time.perf_counter() - t0) * 1000

    try:
        before = [await turn() for _ in range(n_turns_before)]
        during: list[float] = []
        done = asyncio.Event()

        async def turns() -> None:
            while not done.is_set():
                during.append(await turn())

        loop = asyncio.create_task(turns())
        t0 = time.perf_counter()
        deleted = await store.cleanup_old_records(cutoff, batch_size=5_000)
        seconds = time.perf_counter() - t0
        done.set()
        await loop
        await store.delete_session(tenant, session.id)
    finally:
        await store.close()
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
        await conn.execute("INSERT INTO entity_api_call SELECT * FROM mofa_bench_saved_calls")
        await conn.execute("DROP TABLE mofa_bench_saved_calls")
        await conn.execute("VACUUM (ANALYZE) entity_api_call")
    return {
        "deleted": deleted, "of": total, "seconds": round(seconds, 3), "batches": -(-deleted // 5_000),
        "turn_before_median_ms": round(statistics.median(before), 3),
        "turns_during": len(during),
        "turn_during_median_ms": round(statistics.median(during), 3) if during else None,
        "turn_during_max_ms": round(max(during), 3) if during else None,
    }  # fmt: skip


async def run(url: str, mode: Mode) -> dict[str, Any]:
    small_n = mode.n(20_000, 2_000)
    large_n = int(os.environ.get("MOFA_BENCH_MESSAGES") or mode.n(200_000, 20_000))
    n = mode.n(25, 3)
    small, large = await build(url, small_n), await build(url, large_n)
    dbs = {"small": small, "large": large}
    result: dict[str, Any] = {"samples": n}
    ops = {}
    for label, db in dbs.items():
        deep = min(10_000, db.big_user_sessions // 2)  # half way down the big user's list
        ops[label] = _ops(await _probe(db.url, deep), deep)
        result[label] = {
            "deep_page": deep, "messages": db.messages, "sessions": db.sessions, "tenants": db.tenants,
            "big_user_sessions": db.big_user_sessions, "build_seconds": db.build_seconds, "reused": db.reused,
            "sizes": await _sizes(db.url),
        }  # fmt: skip
    timed = await _measure(dbs, ops, n)
    for label, db in dbs.items():
        result[label]["ops"] = timed[label]
        result[label]["retention"] = await _retention(db, n)
    ratios: dict[str, dict[str, Any]] = {}
    for name, big in result["large"]["ops"].items():
        base = result["small"]["ops"][name]
        r = {k: round(big[k] / base[k], 2) if base[k] else None
             for k in ("fresh_ms", "warm_ms", "fresh_min_ms", "warm_min_ms")}
        r["within_target"] = all(
            (ratio is not None and ratio <= TARGET_RATIO) or big[k] <= TARGET_MS
            for k, ratio in r.items() if k in ("fresh_ms", "warm_ms")
        )  # fmt: skip
        ratios[name] = r
    result["ratios"] = ratios
    return result
