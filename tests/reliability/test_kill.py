"""Crashes and hang-ups at scale: 20 SIGKILLs at random moments per database, and consumers that stop
reading mid-reply. Afterwards every session must hang together (see ``assert_consistent``)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import PostgresStore, SqliteStore, Store
from tests.support.rows import assert_consistent, build_agent, calls

from ._killee import AGENT, TENANT, session_ids

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
PARALLEL = 4
SESSIONS_PER_PROCESS = 3


async def run_and_kill(url: str, slot: int, rng: random.Random) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reliability._killee", url, str(slot), str(SESSIONS_PER_PROCESS),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise AssertionError(f"the child did not start: {line!r} {await proc.stderr.read()!r}")
    await asyncio.sleep(rng.uniform(0.05, 0.8))
    assert proc.returncode is None, await proc.stderr.read()  # still streaming when it is killed
    os.kill(proc.pid, signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL


async def kill_twenty_times(url: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill seed {seed}")
    for _ in range(KILLS // PARALLEL):  # the same slots each round: each process resumes the sessions
        await asyncio.gather(*(run_and_kill(url, slot, rng) for slot in range(PARALLEL)))


async def check_after_crashes(store: Store) -> None:
    interrupted = complete = 0
    for slot in range(PARALLEL):
        for sid in session_ids(slot, SESSIONS_PER_PROCESS):
            session = await store.get_session(TENANT, sid)
            assert session is not None and session.agent_id == AGENT
            msgs = await assert_consistent(store, TENANT, sid)
            replies = {c.response_message_id: c for c in await calls(store, TENANT, sid)}
            for m in msgs:
                if m.role != "assistant":
                    continue
                assert m.status in ("complete", "interrupted"), m.status
                if m.status == "complete":  # reply and call were written in one transaction
                    complete += 1
                    assert replies[m.id].status == "success"
                else:  # a crash mid-reply: the checkpointed part is there, marked, with no call
                    interrupted += 1
                    assert m.id not in replies and m.content
            # persisting the mark changes nothing a reader sees, and sticks
            await store.mark_interrupted(TENANT, sid)
            assert [(m.id, m.status) for m in await store.get_session_messages(TENANT, sid)] == [
                (m.id, m.status) for m in msgs
            ]
    assert complete > 0 and interrupted > 0, (complete, interrupted)


async def test_twenty_kills_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    await (await SqliteStore.connect(url)).close()  # migrated before the children start
    await kill_twenty_times(url)
    store = await SqliteStore.connect(url, streaming_lease_seconds=0.3)
    try:
        await asyncio.sleep(0.4)  # past the lease: a reply left streaming by a dead process is interrupted
        await check_after_crashes(store)
    finally:
        await store.close()


async def test_twenty_kills_postgres(fresh_pg_url: str) -> None:
    await (await PostgresStore.connect(fresh_pg_url)).close()
    await kill_twenty_times(fresh_pg_url)
    store = await PostgresStore.connect_with_options(fresh_pg_url, streaming_lease_seconds=0.3)
    try:
        await asyncio.sleep(0.4)
        await check_after_crashes(store)
        # no transaction left open by a killed client holds a lock or a connection
        import psycopg

        async with await psycopg.AsyncConnection.connect(fresh_pg_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
            )
            assert (await cur.fetchone()) == (0,)
    finally:
        await store.close()


@pytest.mark.parametrize("how", ["break", "aclose", "cancel"])
async def test_consumers_hanging_up_mid_reply(db_store: Any, how: str) -> None:
    """100 turns on 20 sessions, each abandoned at a random delta by the consumer."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    rng = random.Random(7)
    reply = " ".join(f"w{i}" for i in range(30))
    agent, _ = await build_agent(db_store, tenant, user, ScriptedProvider([reply], delta_delay=0.001),
                                 checkpoint_interval=0.002)
    sessions = [uuid.uuid4() for _ in range(20)]

    async def one_turn(sid: uuid.UUID, stop_at: int) -> None:
        stream = agent.chat_stream("tell me", session_id=sid)
        n = 0
        if how == "cancel":
            async def consume() -> None:
                nonlocal n
                async for _ in stream:
                    n += 1
                    if n == stop_at:
                        await asyncio.Event().wait()  # stuck until cancelled

            task = asyncio.ensure_future(consume())
            while n < stop_at:  # noqa: ASYNC110 - polling the consumer's progress is the point here
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await stream.aclose()  # waits for the finishing write
            return
        async for _ in stream:
            n += 1
            if n == stop_at:
                break
        if how == "aclose":
            await stream.aclose()
        else:  # a plain break: the generator's finalizer stops the turn; wait until it was recorded
            await stream._done.wait()

    async def talk(sid: uuid.UUID) -> None:
        for _ in range(5):
            await one_turn(sid, rng.randint(1, 29))

    await asyncio.gather(*(talk(s) for s in sessions))
    for sid in sessions:
        msgs = await assert_consistent(db_store, tenant, sid)
        assert [m.role for m in msgs] == ["user", "assistant"] * 5
        assert all(m.status == "cancelled" and reply.startswith(m.content) for m in msgs[1::2])
        assert [c.status for c in await calls(db_store, tenant, sid)] == ["cancelled"] * 5
    await agent.aclose()
