"""kill -9 of a process in the middle of a tool turn: (a) after the tool-call message is saved, (b) while a tool
runs, (c) after one of two results. The next turn, from a new process (this one), goes to a strict fake
provider (the fault server answering 400 to an unanswered call or an orphan result, as OpenAI does) and
succeeds; the unanswered calls read as recorded ``interrupted`` results; no tool ran twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mofa_sdk.llm import LLMAgentBuilder
from mofa_sdk.llm._openai import OpenAICompatibleProvider
from mofa_sdk.persistence import PersistencePlugin, connect_store
from tests.support.fault_server import FaultServer, Reply

CHILD = Path(__file__).with_name("_tool_crash_child.py")


@pytest.fixture
async def strict() -> AsyncIterator[FaultServer]:
    async with FaultServer(Reply(chunks=["all ", "good"]), strict_tools=True) as srv:
        yield srv


def run_child_until(db_url: str, ids: tuple[uuid.UUID, uuid.UUID, uuid.UUID], scenario: str, counter: Path,
                    marker: str) -> list[str]:
    """Start the child, read its lines until ``marker``, then kill -9 it."""
    tenant, user, session = ids
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), db_url, str(tenant), str(user), str(session), scenario, str(counter)],
        stdout=subprocess.PIPE, env=env, text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while marker not in lines:
            line = child.stdout.readline()
            assert line, f"the child ended early (exit {child.poll()}) after {lines}"
            lines.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return lines


@pytest.mark.parametrize(
    ("scenario", "marker", "ran", "answered"),
    [
        ("saved", "saved", [], {}),
        ("running", "running a", ["a"], {}),
        ("one_result", "result c1", ["a", "b"], {"c1": "a done"}),
    ],
)
async def test_kill_minus_nine_mid_tool_turn(
    db_url: str, strict: FaultServer, tmp_path: Path, scenario: str, marker: str, ran: list[str],
    answered: dict[str, str],
) -> None:
    ids = tenant, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    counter = tmp_path / "runs.txt"
    counter.touch()
    run_child_until(db_url, ids, scenario, counter, marker)
    if scenario == "one_result":  # the second tool started too, or the kill came before it: both are fine
        ran = [tag for tag in ran if tag in counter.read_text().split()]
    assert counter.read_text().split() == ran

    store = await connect_store(db_url)
    store.streaming_lease_seconds = 0.2
    try:
        await asyncio.sleep(0.3)  # past the lease: the dead process's open calls are no one's any more
        rows = await store.get_session_messages(tenant, session)
        assert [m.role for m in rows][:2] == ["user", "assistant"] and rows[1].tool_calls
        calls = [c.id for c in rows[1].tool_calls]
        assert {m.tool_call_id: m.content for m in rows if m.role == "tool"} == answered

        # the next turn, a new process's: the calls left open are answered by recorded `interrupted` results
        count_before = counter.read_text()

        def work(tag: str, hang: bool = False) -> str:
            """Does some work, counted."""
            with counter.open("a") as f:
                f.write(tag + "\n")
            return f"{tag} done"

        provider = OpenAICompatibleProvider(base_url=strict.base_url, api_key="k", default_model="m",
                                            read_timeout=5.0)
        plugin = PersistencePlugin.from_store("p", store, user, tenant, user, session)
        agent = await (LLMAgentBuilder().with_provider(provider).with_tools([work])
                       .with_persistence_plugin(plugin).build_async())
        assert await agent.chat("what happened?") == "all good"  # the strict server took the history
        sent = strict.requests[-1].body["messages"]
        results = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
        assert set(results) == set(calls)
        for call_id in calls:
            if call_id in answered:
                assert results[call_id] == answered[call_id]
        after = await store.get_session_messages(tenant, session)
        repaired = [m for m in after if m.role == "tool" and m.tool_call_id not in answered]
        assert {m.tool_call_id for m in repaired} == set(calls) - set(answered)
        assert all(m.is_error and m.status == "interrupted" for m in repaired)
        assert counter.read_text() == count_before  # no tool ran again
        await agent.aclose()
    finally:
        await store.close()
