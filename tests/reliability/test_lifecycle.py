"""Lifecycle faults on every store: a session deleted while its reply streams, replies still pending when the
agent is closed, and a checkpoint that cannot get at the database while the reply streams."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from mofa_sdk.entities import LLMApiCall, Message, Session
from mofa_sdk.errors import UnsavedReplyError
from mofa_sdk.ids import uuid7
from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import PendingReply, PersistencePlugin, Store
from tests.support.rows import AGENT_ID, assert_consistent, build_agent, calls, rows

REPLY = [f"w{i} " for i in range(12)]
TEXT = "".join(REPLY)


def warnings_of(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and part in r.getMessage()]


async def wait_for_row(store: Store, tenant: uuid.UUID, session: uuid.UUID, n: int) -> None:
    """Poll until the session has ``n`` rows (a checkpoint running beside the stream has landed)."""
    for _ in range(500):
        if len(await store.get_session_messages(tenant, session)) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"session {session} never reached {n} rows")


async def leave_pending(
    store: Store, plugin: PersistencePlugin, tenant: uuid.UUID, user: uuid.UUID, sid: uuid.UUID
) -> Message:
    """A saved user message "q2" whose reply ("kept in memory") and call sit in ``plugin.pending``."""
    asked = await store.save_message(Message(
        session_id=sid, tenant_id=tenant, user_id=user, agent_id=AGENT_ID, role="user", content="q2",
    ))
    kept = Message(
        id=uuid7(), session_id=sid, tenant_id=tenant, user_id=user, agent_id=AGENT_ID, role="assistant",
        content="kept in memory", parent_message_id=asked.id,
    )
    call = LLMApiCall(
        tenant_id=tenant, session_id=sid, user_id=user, agent_id=AGENT_ID, request_message_id=asked.id,
        response_message_id=kept.id, model_name="m", status="success",
    )
    plugin.pending.append(PendingReply(tenant, sid, kept, False, call, uncertain=True))
    return kept


@pytest.mark.parametrize("checkpointed", [False, True], ids=["before-a-checkpoint", "after-a-checkpoint"])
async def test_deleting_the_session_mid_reply_drops_that_reply_and_the_agent_goes_on(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, checkpointed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider([REPLY, "on a new session", "on the other session"], delta_delay=0.005)
    agent, plugin = await build_agent(
        store, tenant, user, provider, checkpoint_interval=0.001 if checkpointed else 600
    )
    doomed = agent.session_id
    other = await store.create_session(Session(tenant_id=tenant, user_id=user, agent_id=AGENT_ID))
    seen: list[str] = []
    with caplog.at_level(logging.WARNING, "mofa_sdk"), pytest.raises(UnsavedReplyError) as err:
        async for text in agent.chat_stream("question"):
            seen.append(text)
            if len(seen) == 3:
                if checkpointed:  # the streaming row exists: the final write would update it
                    await wait_for_row(store, tenant, doomed, 2)
                assert await store.delete_session(tenant, doomed)  # `mofa sessions delete` elsewhere
    assert "".join(seen) == TEXT  # the user saw the whole reply

    # later turns work: on a new session, and on another existing one
    fresh = await agent.new_session()
    assert await agent.chat("next") == "on a new session"
    assert await agent.chat("and there", session_id=other.id) == "on the other session"
    assert [r[1:] for r in await rows(store, tenant, fresh)] == [
        ("user", "next", "complete"), ("assistant", "on a new session", "complete"),
    ]
    assert [r[1:] for r in await rows(store, tenant, other.id)] == [
        ("user", "and there", "complete"), ("assistant", "on the other session", "complete"),
    ]

    # the reply was handed back once, in the error, and not kept for a retry that can only fail
    reply = err.value.reply
    assert isinstance(reply, PendingReply) and reply.session_deleted
    assert reply.message is not None and reply.message.content == TEXT
    assert "was deleted" in str(err.value)
    assert plugin.pending == []
    assert warnings_of(caplog, "the session was deleted")
    assert await store.get_session(tenant, doomed) is None  # and nothing brought it back
    assert await store.get_session_messages(tenant, doomed) == []
    await agent.aclose()


async def test_a_pending_reply_whose_session_is_deleted_later_is_dropped_by_flush(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply kept after a failed write (handed back then), whose session is deleted before the retry:
    the retry drops it with a warning instead of failing every later turn."""
    agent, plugin = await build_agent(store, tenant, user, ScriptedProvider(["first", "second"]))
    assert await agent.chat("q1") == "first"
    doomed = await store.create_session(Session(tenant_id=tenant, user_id=user, agent_id=AGENT_ID))
    asked = await store.save_message(Message(
        session_id=doomed.id, tenant_id=tenant, user_id=user, agent_id=AGENT_ID, role="user", content="q",
    ))
    lost = Message(
        id=uuid7(), session_id=doomed.id, tenant_id=tenant, user_id=user, agent_id=AGENT_ID,
        role="assistant", content="never written", parent_message_id=asked.id,
    )
    call = LLMApiCall(
        tenant_id=tenant, session_id=doomed.id, user_id=user, agent_id=AGENT_ID, request_message_id=asked.id,
        response_message_id=lost.id, model_name="m", status="success",
    )
    plugin.pending.append(PendingReply(tenant, doomed.id, lost, False, call, uncertain=True))
    assert await store.delete_session(tenant, doomed.id)
    with caplog.at_level(logging.WARNING, "mofa_sdk"):
        assert await agent.chat("q2") == "second"  # before_call flushed, dropped it, went on
    assert plugin.pending == []
    assert warnings_of(caplog, f"reply {lost.id} of session {doomed.id}")
    assert [r[2] for r in await rows(store, tenant, agent.session_id)] == ["q1", "first", "q2", "second"]
    await agent.aclose()


async def test_aclose_writes_the_replies_still_pending(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    agent, plugin = await build_agent(store, tenant, user, ScriptedProvider(["saved"]))
    await agent.chat("q1")
    sid = agent.session_id
    kept = await leave_pending(store, plugin, tenant, user, sid)
    await agent.aclose()
    assert plugin.pending == []
    assert [r[1:] for r in await rows(store, tenant, sid)] == [
        ("user", "q1", "complete"),
        ("assistant", "saved", "complete"),
        ("user", "q2", "complete"),
        ("assistant", "kept in memory", "complete"),
    ]
    assert [c.response_message_id for c in await calls(store, tenant, sid)][-1] == kept.id
    await assert_consistent(store, tenant, sid)


@asynccontextmanager
async def write_lock(
    store: Store, session: uuid.UUID, pg_url: str | None, sqlite_path: Path
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another connection holds what a checkpoint needs: the session row on PostgreSQL (``FOR UPDATE``),
    the file's write lock on SQLite (``BEGIN IMMEDIATE``). Yields ``release`` (idempotent)."""
    if store.dialect == "postgres":
        assert pg_url is not None
        conn = await psycopg.AsyncConnection.connect(pg_url)
        await conn.execute("SELECT 1 FROM entity_session WHERE id = %s FOR UPDATE", (session,))

        async def release_pg() -> None:
            await conn.rollback()

        try:
            yield release_pg
        finally:
            await conn.close()
    else:
        lite = sqlite3.connect(sqlite_path, isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")

        async def release_lite() -> None:
            if lite.in_transaction:
                lite.execute("ROLLBACK")

        try:
            yield release_lite
        finally:
            await release_lite()
            lite.close()


async def test_a_checkpoint_kept_waiting_by_the_database_does_not_hold_up_the_stream(
    db_store: Store, tenant: uuid.UUID, user: uuid.UUID, request: pytest.FixtureRequest, sqlite_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint that cannot get at the database (a lock here; a dead server waits out its connect
    timeout the same way) runs beside the stream: every delta reaches the user while it waits, and once
    the database answers the checkpoint and the final write land."""
    store = db_store
    pg_url = str(request.getfixturevalue("pg_url")) if store.dialect == "postgres" else None
    agent, plugin = await build_agent(
        store, tenant, user, ScriptedProvider([REPLY], delta_delay=0.01), checkpoint_interval=0.001
    )
    seen: list[str] = []
    all_while_locked = False
    watchdog_fired = False
    with caplog.at_level(logging.WARNING, "mofa_sdk"):
        stream = agent.chat_stream("question")
        it = aiter(stream)
        seen.append(await anext(it))  # the user message is saved; no checkpoint has run yet
        async with write_lock(store, agent.session_id, pg_url, sqlite_path) as release:

            async def watchdog() -> None:  # a guard against the old deadlock, not a speed check
                nonlocal watchdog_fired
                await asyncio.sleep(60)
                watchdog_fired = True
                await release()

            guard = asyncio.create_task(watchdog())
            async for text in it:
                seen.append(text)
                if len(seen) == len(REPLY):
                    all_while_locked = not watchdog_fired
                    await release()  # the last delta is here: let the database answer again
            guard.cancel()
    assert "".join(seen) == TEXT
    assert all_while_locked, "the stream waited for the checkpoint"
    assert not warnings_of(caplog, "checkpoint"), "a checkpoint gave up while the stream waited for it"
    assert plugin.pending == []
    assert [r[1:] for r in await rows(store, tenant, agent.session_id)] == [
        ("user", "question", "complete"), ("assistant", TEXT, "complete"),
    ]
    await agent.aclose()


async def test_aclose_gives_up_after_flush_timeout_and_names_what_it_could_not_write(
    pg_url: str, sqlite_path: Path, tenant: uuid.UUID, user: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    """The pending reply's write waits on a lock that is not released: aclose() stops after the plugin's
    flush_timeout, logs which reply it could not write, and leaves the database as it was.
    (PostgreSQL: a cancelled write there ends at once. On SQLite the write waits out busy_timeout.)"""
    from mofa_sdk.persistence import PostgresStore

    store = await PostgresStore.connect(pg_url)
    try:
        agent, plugin = await build_agent(store, tenant, user, ScriptedProvider(["saved"]))
        plugin.flush_timeout = 0.5
        await agent.chat("q1")
        sid = agent.session_id
        kept = await leave_pending(store, plugin, tenant, user, sid)
        async with write_lock(store, sid, pg_url, sqlite_path):
            with caplog.at_level(logging.WARNING, "mofa_sdk"):
                await asyncio.wait_for(agent.aclose(), 60)  # a guard against a hang, not a speed check
        (warning,) = warnings_of(caplog, "could not be written before closing")
        assert f"reply {kept.id} of session {sid}" in warning and "within 0.5s" in warning
        assert [p.message for p in plugin.pending] == [kept]  # still there for the caller to look at
        assert [r[2] for r in await rows(store, tenant, sid)] == ["q1", "saved", "q2"]
        assert len(await calls(store, tenant, sid)) == 1
    finally:
        await store.close()


def test_an_sqlite_path_that_cannot_be_opened_is_one_error_and_no_thread_traceback(tmp_path: Path) -> None:
    """A script's ``asyncio.run(SqliteStore.connect(...))`` on a folder: the error, and no traceback from
    aiosqlite's thread reporting to a loop that has closed."""
    import subprocess
    import sys

    folder = tmp_path / "a-folder"
    folder.mkdir()
    script = (
        "import asyncio, sys\n"
        "from mofa_sdk.errors import DatabaseUnavailableError\n"
        "from mofa_sdk.persistence import SqliteStore\n"
        "try:\n"
        f"    asyncio.run(SqliteStore.connect({f'sqlite:///{folder}'!r}))\n"
        "except DatabaseUnavailableError as exc:\n"
        "    print(exc)\n"
    )
    for _ in range(5):  # the traceback came from a race between that thread and the loop's end
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == f"opening SQLite database {folder}: unable to open database file"
        assert done.stderr == ""
