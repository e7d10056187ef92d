"""PostgreSQL faults on a throwaway cluster: restarts, an unreachable server, a server going away mid-reply."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest

from mofa_sdk.errors import ConfigError, DatabaseUnavailableError, UnsavedReplyError
from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import PostgresStore, quick_agent_with_postgres
from tests.support.pg_cluster import PgCluster
from tests.support.ports import free_port
from tests.support.rows import assert_consistent, build_agent, calls, rows

REPLY = "one two three four five six seven eight"


async def wait_until_back(store: PostgresStore) -> None:
    """The pool reconnects on its own, with backoff (1 s, 2 s, 4 s …): wait until it has (bounded)."""
    for _ in range(60):
        try:
            await store.get_session(uuid.uuid4(), uuid.uuid4())
            return
        except DatabaseUnavailableError:
            await asyncio.sleep(0.5)
    raise AssertionError("the pool did not reconnect within 30 s")


async def test_restart_between_turns_the_pool_recovers(cluster: PgCluster) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=3, connect_timeout=5)
    try:
        agent, _ = await build_agent(store, tenant, user, ScriptedProvider(["first reply", "second reply"]))
        assert await agent.chat("turn one") == "first reply"
        await asyncio.to_thread(cluster.restart)  # every pooled connection is now dead
        assert await agent.chat("turn two") == "second reply"
        assert await rows(store, tenant, agent.session_id) == [
            (1, "user", "turn one", "complete"),
            (2, "assistant", "first reply", "complete"),
            (3, "user", "turn two", "complete"),
            (4, "assistant", "second reply", "complete"),
        ]
        assert [c.status for c in await calls(store, tenant, agent.session_id)] == ["success", "success"]
        await agent.aclose()
    finally:
        await store.close()


async def test_unreachable_at_build_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    builder = quick_agent_with_postgres("hi", database_url=f"postgresql://app:pw-123@127.0.0.1:{port}/db")
    builder.with_provider(ScriptedProvider(["x"]))
    with pytest.raises(DatabaseUnavailableError) as err:
        await asyncio.wait_for(builder.build_async(), 30)  # a guard against a hang, not a speed check
    assert f"port={port}" in str(err.value) and "pw-123" not in str(err.value)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket accepts TCP connections and then never says a word (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


async def test_a_server_that_never_answers_times_out_at_the_configured_bound(silent_port: int) -> None:
    url = f"postgresql://app@127.0.0.1:{silent_port}/db"
    with pytest.raises(DatabaseUnavailableError) as err:
        await asyncio.wait_for(PostgresStore.connect_with_options(url, connect_timeout=1.5), 30)
    assert "within 1.5s" in str(err.value)


async def test_server_going_away_mid_reply_loses_nothing(cluster: PgCluster) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=2, connect_timeout=2)
    try:
        provider = ScriptedProvider([REPLY, "after the outage"], delta_delay=0.05)
        agent, plugin = await build_agent(store, tenant, user, provider, checkpoint_interval=0.05)
        seen: list[str] = []
        with pytest.raises(UnsavedReplyError) as err:
            async for text in agent.chat_stream("first question"):
                seen.append(text)
                if len(seen) == 3:  # the server dies while the reply streams
                    await asyncio.to_thread(cluster.stop, "immediate")
        # the user received the whole reply; the error came after it, and says what happened
        assert "".join(seen) == REPLY
        assert "could not be saved" in str(err.value)
        assert len(plugin.pending) == 1 and err.value.reply is plugin.pending[0]
        assert plugin.pending[0].message is not None and plugin.pending[0].message.content == REPLY

        await asyncio.to_thread(cluster.start)
        await wait_until_back(store)
        # the next turn writes the kept reply first, then goes on, in order
        assert await agent.chat("second question") == "after the outage"
        assert plugin.pending == []
        msgs = await assert_consistent(store, tenant, agent.session_id)
        assert [(m.role, m.content, m.status) for m in msgs] == [
            ("user", "first question", "complete"),
            ("assistant", REPLY, "complete"),
            ("user", "second question", "complete"),
            ("assistant", "after the outage", "complete"),
        ]
        assert [c.status for c in await calls(store, tenant, agent.session_id)] == ["success", "success"]
        await agent.aclose()
    finally:
        await store.close()


async def test_unsaved_reply_is_written_by_flush(cluster: PgCluster) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=2, connect_timeout=2)
    try:
        provider = ScriptedProvider(["alpha beta gamma delta"], delta_delay=0.05)
        agent, plugin = await build_agent(store, tenant, user, provider, checkpoint_interval=10)
        stream = agent.chat_stream("question")
        got = ""
        with pytest.raises(UnsavedReplyError):
            async for text in stream:
                got += text
                if text == "alpha":
                    await asyncio.to_thread(cluster.stop, "fast")
        assert got == "alpha beta gamma delta"
        with pytest.raises(DatabaseUnavailableError):  # still down: flush says so and keeps the reply
            await plugin.flush()
        assert len(plugin.pending) == 1
        await asyncio.to_thread(cluster.start)
        await wait_until_back(store)
        assert await plugin.flush() == 1
        assert plugin.pending == []
        assert await rows(store, tenant, agent.session_id) == [
            (1, "user", "question", "complete"),
            (2, "assistant", "alpha beta gamma delta", "complete"),
        ]
        (call,) = await calls(store, tenant, agent.session_id)
        assert call.status == "success" and call.response_message_id is not None
        await agent.aclose()
    finally:
        await store.close()


async def test_wrong_password_is_a_clear_error_without_the_password(pw_cluster: PgCluster) -> None:
    store = await PostgresStore.connect(pw_cluster.url())  # the right password works
    await store.close()
    with pytest.raises(ConfigError) as err:
        await PostgresStore.connect(pw_cluster.url(password="not-the-pw-42"))
    message = str(err.value)
    assert "password authentication failed" in message and "not-the-pw-42" not in message
    assert "not-the-pw-42" not in repr(err.value)


async def test_checkpoints_waiting_on_a_dead_server_do_not_hold_up_the_stream(
    cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The server dies before the first checkpoint: the checkpoint waits for a connection (up to the
    connect timeout) beside the stream, every delta reaches the user meanwhile, and once the server is
    back the checkpoint and the final write land."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=2, connect_timeout=30)
    try:
        provider = ScriptedProvider([REPLY], delta_delay=0.02)
        agent, plugin = await build_agent(store, tenant, user, provider, checkpoint_interval=0.001)
        seen: list[str] = []
        waiting_at_the_end = -1
        with caplog.at_level(logging.WARNING, "mofa_sdk"):
            async for text in agent.chat_stream("question"):
                seen.append(text)
                if len(seen) == 1:  # saved the user message; no checkpoint has started yet
                    await asyncio.to_thread(cluster.stop, "immediate")
                if len(seen) == len(REPLY.split()):
                    # the last delta is here while a checkpoint still waits for a connection, not given up
                    waiting_at_the_end = store.pool_stats().get("requests_waiting", 0)
                    failed = [r for r in caplog.records if "checkpoint" in r.getMessage()]
                    assert failed == [], "the stream waited for a checkpoint to give up"
                    await asyncio.to_thread(cluster.start)
        assert "".join(seen) == REPLY
        assert waiting_at_the_end >= 1
        assert plugin.pending == []
        assert await rows(store, tenant, agent.session_id) == [
            (1, "user", "question", "complete"),
            (2, "assistant", REPLY, "complete"),
        ]
        assert [c.status for c in await calls(store, tenant, agent.session_id)] == ["success"]
        await agent.aclose()
    finally:
        await store.close()


async def test_aclose_writes_a_reply_kept_during_an_outage(cluster: PgCluster) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=2, connect_timeout=2)
    try:
        provider = ScriptedProvider(["alpha beta gamma delta"], delta_delay=0.05)
        agent, plugin = await build_agent(store, tenant, user, provider, checkpoint_interval=10)
        plugin.flush_timeout = 30  # the pool's reconnection back-off may take a few seconds
        with pytest.raises(UnsavedReplyError):
            async for text in agent.chat_stream("question"):
                if text == "alpha":
                    await asyncio.to_thread(cluster.stop, "fast")
        assert len(plugin.pending) == 1
        await asyncio.to_thread(cluster.start)
        await agent.aclose()  # the script ends here: nothing else would write the reply
        assert plugin.pending == []
        assert await rows(store, tenant, agent.session_id) == [
            (1, "user", "question", "complete"),
            (2, "assistant", "alpha beta gamma delta", "complete"),
        ]
        assert [c.status for c in await calls(store, tenant, agent.session_id)] == ["success"]
    finally:
        await store.close()


async def test_a_session_deleted_while_its_reply_waits_in_pending(
    cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The server went away mid-reply (the reply waits in pending); when it is back, the session is
    deleted elsewhere before the next turn: that reply is dropped with a warning, the agent goes on."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    store = await PostgresStore.connect_with_options(cluster.url(), max_connections=2, connect_timeout=2)
    try:
        provider = ScriptedProvider(["alpha beta gamma delta", "fresh start"], delta_delay=0.05)
        agent, plugin = await build_agent(store, tenant, user, provider, checkpoint_interval=10)
        doomed = agent.session_id
        with pytest.raises(UnsavedReplyError):
            async for text in agent.chat_stream("question"):
                if text == "alpha":
                    await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.to_thread(cluster.start)
        await wait_until_back(store)
        other = await PostgresStore.connect(cluster.url())  # `mofa sessions delete`, another process
        try:
            assert await other.delete_session(tenant, doomed)
        finally:
            await other.close()
        await agent.new_session()
        with caplog.at_level(logging.WARNING, "mofa_sdk"):
            assert await agent.chat("again") == "fresh start"
        assert plugin.pending == []
        assert any(f"session {doomed}" in r.getMessage() for r in caplog.records)
        assert [r[1:] for r in await rows(store, tenant, agent.session_id)] == [
            ("user", "again", "complete"), ("assistant", "fresh start", "complete"),
        ]
        await agent.aclose()
    finally:
        await store.close()
