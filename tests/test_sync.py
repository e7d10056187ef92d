"""The blocking facade (``mofa_sdk.sync``): the async API with no ``await``, on every store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from mofa_sdk import sync
from mofa_sdk.errors import AgentError, MofaError
from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.sync._portal import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sync.db'}"
    return str(request.getfixturevalue("pg_url"))


def open_store(url: str) -> Any:
    return sync.InMemoryStore() if url == "memory://" else sync.connect_store(url)


def test_agent_chat_and_stream_are_plain_calls(store_url: str) -> None:
    store = open_store(store_url)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    plugin = sync.PersistencePlugin.from_store("p", store, user, tenant, user, None)
    agent = (sync.LLMAgentBuilder().with_provider(ScriptedProvider(["Hello!", ["a", "b", "c"]]))
             .with_sliding_window(1).with_persistence_plugin(plugin).build())
    assert agent.chat("Hi") == "Hello!"
    stream = agent.chat_stream("more")
    assert list(stream) == ["a", "b", "c"]
    assert stream.text == "abc" and stream.status == "complete"
    assert [m.content for m in agent.history] == ["more", "abc"]  # window 1: the last round only
    stored = store.get_session_messages(tenant, agent.session_id)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Hi", "complete"), ("assistant", "Hello!", "complete"),
        ("user", "more", "complete"), ("assistant", "abc", "complete"),
    ]
    agent.close()
    store.close()


def test_breaking_out_of_a_stream_saves_the_reply_as_cancelled(store_url: str) -> None:
    store = open_store(store_url)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    plugin = sync.PersistencePlugin.from_store("p", store, user, tenant, user, None)
    agent = (sync.LLMAgentBuilder().with_provider(ScriptedProvider([[f"t{i} " for i in range(50)]]))
             .with_persistence_plugin(plugin).build())
    for n, _ in enumerate(agent.chat_stream("long story"), 1):
        if n == 3:
            break
    reply = store.get_session_messages(tenant, agent.session_id)[-1]
    assert (reply.role, reply.content, reply.status) == ("assistant", "t0 t1 t2 ", "cancelled")
    agent.close()
    store.close()


def test_manual_context_inside_a_transaction_commits_or_rolls_back(store_url: str) -> None:
    store = open_store(store_url)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    ctx = sync.PersistenceContext.new(store, user, tenant, user)
    with store.transaction() as tx:
        ctx.save_user_message("kept", tx=tx)
        ctx.save_assistant_message("also kept", tx=tx)
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
        ctx.save_user_message("rolled back", tx=tx)
        raise RuntimeError("boom")
    assert [m.content for m in store.get_session_messages(tenant, ctx.session_id)] == ["kept", "also kept"]
    store.close()


def test_errors_come_back_as_raised() -> None:
    with pytest.raises(MofaError, match="postgresql://"):
        sync.quick_agent_with_postgres("x", database_url="sqlite:///nope.db")
    with pytest.raises(MofaError, match="ftp"):
        sync.connect_store("ftp://example/db")


def test_it_works_where_the_thread_already_runs_a_loop() -> None:
    """As in a Jupyter cell: sync code called while this thread's own loop is running."""

    async def cell() -> str:
        agent = sync.quick_agent_with_memory("You are helpful.").with_provider(ScriptedProvider(["ok"])).build()
        return str(agent.chat("hi"))

    assert asyncio.run(cell()) == "ok"


def test_calling_it_from_its_own_loop_is_refused_not_a_deadlock() -> None:
    async def inner() -> None:
        sync.InMemoryStore().close()

    with pytest.raises(AgentError, match="inside its own event loop"):
        run(inner())


def test_a_script_that_closes_nothing_exits(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from mofa_sdk.llm import ScriptedProvider
        from mofa_sdk.sync import quick_agent_with_sqlite
        agent = quick_agent_with_sqlite("You are helpful.", {str(tmp_path / 'chat.db')!r}).with_provider(
            ScriptedProvider(["Hello there."])).build()
        for text in agent.chat_stream("hi"):
            print(text, end="")
        print()
        print(agent.session_id)
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    text, sid = done.stdout.splitlines()
    assert text == "Hello there."
    store = sync.connect_store(f"sqlite:///{tmp_path / 'chat.db'}")
    assert [m.content for m in store.get_session_messages(uuid.UUID(int=0), uuid.UUID(sid))] == [
        "hi", "Hello there."]
    store.close()
