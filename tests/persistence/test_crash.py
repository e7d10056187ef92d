"""kill -9 mid-reply: the user message and the reply up to the last checkpoint survive, the reply reads as
``interrupted``, and the session resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, connect_store

CHILD = Path(__file__).with_name("_crash_child.py")


async def test_kill_minus_nine_mid_reply(db_url: str) -> None:
    tenant, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    interval = 0.1
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), db_url, str(tenant), str(user), str(session), str(interval)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    printed: list[str] = []
    started = None
    while True:
        line = child.stdout.readline()
        assert line, f"child ended early (exit {child.poll()})"
        printed.append(line.rstrip("\n"))
        started = started or time.monotonic()
        if time.monotonic() - started > 5 * interval and len(printed) > 50:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()  # the pipe is ours to close: wait() leaves it open (a ResourceWarning)
    assert child.returncode == -signal.SIGKILL
    seen = "".join(printed)

    store = await connect_store(db_url)
    store.streaming_lease_seconds = 0.2
    try:
        await asyncio.sleep(0.3)  # past the lease: nothing checkpoints this reply any more
        msgs = await store.get_session_messages(tenant, session)
        assert [(m.seq, m.role) for m in msgs] == [(1, "user"), (2, "assistant")]
        user_msg, reply = msgs
        assert user_msg.content == "tell me a long story"
        assert reply.status == "interrupted"
        assert reply.content and seen.startswith(reply.content), "the checkpoint holds a prefix of what was streamed"
        # at most one checkpoint interval (plus the last lines still in the pipe) is lost
        assert len(reply.content) >= len("".join(printed[: len(printed) // 2]))

        provider = ScriptedProvider(["resumed fine"])
        plugin = PersistencePlugin.from_store("p", store, user, tenant, user, session)
        agent = await LLMAgentBuilder().with_provider(provider).with_persistence_plugin(plugin).build_async()
        assert [(m.role, m.status) for m in agent.history] == [("user", "complete"), ("assistant", "interrupted")]
        assert await agent.chat("and now?") == "resumed fine"
        sent = provider.requests[0][0]
        assert sent[-3].content == "tell me a long story" and sent[-2].content == reply.content
        after = await store.get_session_messages(tenant, session)
        assert [m.seq for m in after] == [1, 2, 3, 4]
        assert [m.status for m in after] == ["complete", "interrupted", "complete", "complete"]
    finally:
        await store.close()
