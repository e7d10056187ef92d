"""Concurrency and load: many sessions on one small pool, many writers on one session, racing migrations."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from mofa_sdk.entities import Message, Session
from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import PostgresStore
from mofa_sdk.persistence._migrations import load_migrations
from tests.support.rows import assert_consistent, build_agent, calls

ROOT = Path(__file__).resolve().parents[2]


async def test_200_sessions_10_turns_on_a_pool_of_10(pg_url: str) -> None:
    store = await PostgresStore.connect_with_options(pg_url, max_connections=10, min_connections=2)
    try:
        tenant, user = uuid.uuid4(), uuid.uuid4()
        provider = ScriptedProvider(["short reply"])
        agent, _ = await build_agent(store, tenant, user, provider)
        sessions = [uuid.uuid4() for _ in range(200)]

        async def talk(sid: uuid.UUID) -> None:
            for turn in range(10):
                assert await agent.chat(f"{sid} turn {turn}", session_id=sid) == "short reply"

        await asyncio.gather(*(talk(s) for s in sessions))
        for sid in sessions:
            msgs = await assert_consistent(store, tenant, sid)
            assert [(m.seq, m.role, m.content) for m in msgs] == [
                row
                for turn in range(10)
                for row in ((2 * turn + 1, "user", f"{sid} turn {turn}"), (2 * turn + 2, "assistant", "short reply"))
            ]
            assert all(m.status == "complete" for m in msgs)
            assert [c.status for c in await calls(store, tenant, sid)] == ["success"] * 10
        stats = store.pool_stats()
        # back to idle: nothing checked out, nobody waiting, never above the configured size
        assert stats["pool_size"] <= 10
        assert stats["pool_available"] == stats["pool_size"]
        assert stats.get("requests_waiting", 0) == 0
        assert stats.get("requests_errors", 0) == 0
        await agent.aclose()
    finally:
        await store.close()


async def test_twenty_writers_on_one_session(db_store: Any) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session = await db_store.create_session(Session(tenant_id=tenant, user_id=user))

    async def writer(w: int) -> list[int]:
        seqs = []
        for i in range(15):
            saved = await db_store.save_message(
                Message(session_id=session.id, tenant_id=tenant, user_id=user, role="user", content=f"{w}:{i}")
            )
            seqs.append(saved.seq)
        return seqs

    per_writer = await asyncio.gather(*(writer(w) for w in range(20)))
    everything = sorted(s for seqs in per_writer for s in seqs)
    assert everything == list(range(1, 301))  # unique and gap-free
    assert all(seqs == sorted(seqs) for seqs in per_writer)  # each writer's own order is kept
    msgs = await db_store.get_session_messages(tenant, session.id)
    assert [m.seq for m in msgs] == list(range(1, 301))
    by_content = {m.content: m.seq for m in msgs}
    for w, seqs in enumerate(per_writer):
        assert [by_content[f"{w}:{i}"] for i in range(15)] == seqs  # what each writer was told is what is stored


MIGRATE_SQLITE = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from mofa_sdk.persistence import SqliteStore

    async def main() -> None:
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together
        store = await SqliteStore.connect("sqlite:///" + sys.argv[1], migrate=False)
        try:
            print(json.dumps(await store.migrate()))
        finally:
            await store.close()

    asyncio.run(main())
    """
)


def test_processes_migrating_one_empty_sqlite_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    start = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_SQLITE, str(path), str(start)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    applied = [name for out, _ in results for name in json.loads(out.strip().splitlines()[-1])]
    assert sorted(applied) == [m.name for m in load_migrations("sqlite")]  # each applied exactly once
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        recorded = [r[0] for r in conn.execute("SELECT name FROM mofa_migrations")]
    assert {"entity_provider", "entity_agent", "entity_session", "entity_message", "entity_api_call"} <= names
    assert sorted(recorded) == [m.name for m in load_migrations("sqlite")]
