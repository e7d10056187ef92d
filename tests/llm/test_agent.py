"""LLMAgent: chat, the window over many turns, sessions (in memory and through a backend), concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from mofa_sdk.errors import AgentError, ConfigError, TenantMismatchError
from mofa_sdk.ids import uuid7
from mofa_sdk.llm import (
    ChatMessage,
    EventHandler,
    LLMAgent,
    LLMAgentBuilder,
    ScriptedProvider,
    Turn,
    TurnResult,
)


def agent_with(provider: ScriptedProvider, window: int | None = None) -> LLMAgent:
    builder = LLMAgentBuilder().with_provider(provider).with_system_prompt("sys")
    return builder.with_sliding_window(window).build()


class DictBackend(EventHandler):
    """A session backend that keeps rows in a dict: enough to check what the agent asks of a plugin."""

    def __init__(self, user_id: uuid.UUID | None = None, tenant_id: uuid.UUID | None = None) -> None:
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.agent_id: uuid.UUID | None = None
        self.session_id: uuid.UUID | None = None
        self.rows: dict[uuid.UUID, list[ChatMessage]] = {}
        self.owner: dict[uuid.UUID, uuid.UUID] = {}
        self.opened: list[tuple[uuid.UUID | None, dict[str, Any]]] = []
        self.closed = False

    async def open_session(
        self, session_id: uuid.UUID | None, *, window: int | None, user_id: uuid.UUID, tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> tuple[uuid.UUID, list[ChatMessage]]:
        self.opened.append((session_id, {"window": window, "user_id": user_id, "tenant_id": tenant_id,
                                         "agent_id": agent_id}))
        sid = session_id or uuid7()
        if self.owner.setdefault(sid, tenant_id) != tenant_id:
            raise TenantMismatchError(f"session {sid} belongs to another tenant")
        return sid, list(self.rows.setdefault(sid, []))

    async def list_sessions(self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 50) -> list[Any]:
        return [sid for sid, t in self.owner.items() if t == tenant_id][:limit]

    async def close(self) -> None:
        self.closed = True

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        self.rows[turn.session_id] += [
            ChatMessage(role="user", content=turn.user_text),
            ChatMessage(role="assistant", content=result.text),
        ]


async def test_chat_returns_the_whole_reply() -> None:
    agent = agent_with(ScriptedProvider(["The answer is 42."]))
    assert await agent.chat("What is it?") == "The answer is 42."


async def test_history_after_five_turns_with_window_two() -> None:
    p = ScriptedProvider([f"reply {i}" for i in range(6)])
    agent = agent_with(p, window=2)
    for i in range(5):
        await agent.chat(f"question {i}")
    assert [(m.role, m.content) for m in agent.history] == [
        ("system", "sys"),
        ("user", "question 3"), ("assistant", "reply 3"),
        ("user", "question 4"), ("assistant", "reply 4"),
    ]
    # and that is exactly what the next request carries before the new message
    await agent.chat("question 5")
    assert [m.content for m in p.requests[-1][0]] == [
        "sys", "question 3", "reply 3", "question 4", "reply 4", "question 5"
    ]


async def test_token_budget_drops_oldest_rounds() -> None:
    p = ScriptedProvider(["r" * 40])  # 10 estimated tokens per reply
    agent = LLMAgentBuilder().with_provider(p).with_token_budget(30).build()
    for i in range(4):
        await agent.chat(f"q{i}")
    sent = p.requests[-1][0]
    assert sum(p.count_tokens(m.content) for m in sent) <= 30
    assert [m.content for m in sent][-1] == "q3"
    assert sent[0].content == "q1"  # q0's round no longer fits, q1's and q2's do


async def test_empty_text_is_a_config_error() -> None:
    agent = agent_with(ScriptedProvider(["x"]))
    for bad in ("", "   \n"):
        with pytest.raises(ConfigError, match="non-empty"):
            agent.chat_stream(bad)
    with pytest.raises(ConfigError):
        await agent.chat("")


async def test_two_sessions_stream_concurrently_on_one_agent() -> None:
    p = ScriptedProvider(["slow reply never ends", "fast reply"], hang_after=1, hang_on=[0])
    agent = agent_with(p)
    a, b = agent.session_id, uuid7()
    first = asyncio.Event()

    async def slow() -> None:
        async for _ in agent.chat_stream("to a", session_id=a):
            first.set()

    task = asyncio.create_task(slow())
    await first.wait()
    # session a is mid-turn; session b is not blocked by it
    assert await agent.chat("to b", session_id=str(b)) == "fast reply"
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m.content for m in agent.history] == ["sys", "to a", "slow"]
    await agent.switch_session(b)
    assert [m.content for m in agent.history] == ["sys", "to b", "fast reply"]


async def test_a_second_turn_on_a_busy_session_waits() -> None:
    p = ScriptedProvider(["first reply", "second reply"], hang_after=1, hang_on=[0])
    agent = agent_with(p)
    first = asyncio.Event()

    async def turn_one() -> None:
        async for _ in agent.chat_stream("one"):
            first.set()

    t1 = asyncio.create_task(turn_one())
    await first.wait()
    t2 = asyncio.create_task(agent.chat("two"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(p.requests) == 1 and not t2.done()  # waiting for the session, provider not called
    t1.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t1
    assert await t2 == "second reply"
    assert [m.content for m in p.requests[1][0]] == ["sys", "one", "first", "two"]


async def test_sessions_in_memory() -> None:
    agent = agent_with(ScriptedProvider(["r1", "r2"]))
    s0 = agent.session_id
    await agent.chat("in s0")
    s1 = await agent.new_session()
    assert s1 != s0 and agent.session_id == s1
    assert [m.content for m in agent.history] == ["sys"]
    await agent.chat("in s1")
    await agent.switch_session(str(s0))
    assert agent.session_id == s0
    assert [m.content for m in agent.history] == ["sys", "in s0", "r1"]
    sessions = await agent.list_sessions()
    assert [s.id for s in sessions] == [s1, s0]
    assert all(s.tenant_id == agent.tenant_id and s.user_id == agent.user_id for s in sessions)
    with pytest.raises(ConfigError, match="session_id must be a UUID, got 'nope'"):
        await agent.switch_session("nope")
    with pytest.raises(ConfigError, match="session_id"):
        agent.chat_stream("x", session_id="nope")
    assert agent.session_id == s0


async def test_sessions_through_a_backend() -> None:
    tenant, user = uuid7(), uuid7()
    backend = DictBackend(user, tenant)
    p = ScriptedProvider(["first", "second", "third"], cycle=True)
    builder = LLMAgentBuilder().with_provider(p).with_sliding_window(3).with_persistence_plugin(backend)
    agent = await builder.build_async()
    start = agent.session_id
    expected = {"window": 3, "user_id": user, "tenant_id": tenant, "agent_id": agent.id}
    assert backend.opened[0] == (None, expected)
    await agent.chat("hello")
    assert [m.content for m in backend.rows[start]] == ["hello", "first"]

    other = await agent.new_session()
    assert backend.opened[-1][0] is None and agent.session_id == other
    # a second agent resumes the first session from the backend
    again = await LLMAgentBuilder().with_provider(p).with_persistence_plugin(backend).with_session_id(
        start
    ).build_async()
    assert [m.content for m in again.history] == ["hello", "first"]
    # chat_stream(session_id=…) on a session this agent does not hold opens it through the backend first
    theirs = await again.new_session()
    await again.chat("from again")
    await agent.chat("more", session_id=theirs)
    assert backend.opened[-1][0] == theirs
    assert [m.content for m in p.requests[-1][0]] == ["from again", "second", "more"]
    assert agent.session_id == other  # the current session did not change
    assert set(await agent.list_sessions()) == {start, other, theirs}
    await agent.aclose()
    assert backend.closed and p.closed


async def test_switching_to_a_session_of_another_tenant_fails_and_changes_nothing() -> None:
    backend = DictBackend(uuid7(), uuid7())
    theirs = uuid7()
    backend.owner[theirs] = uuid7()
    agent = await LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_persistence_plugin(
        backend
    ).build_async()
    mine = agent.session_id
    with pytest.raises(TenantMismatchError):
        await agent.switch_session(theirs)
    assert agent.session_id == mine


async def test_aclose_closes_provider_and_refuses_new_turns() -> None:
    p = ScriptedProvider(["x"])
    async with agent_with(p) as agent:
        await agent.chat("q")
    assert p.closed
    with pytest.raises(AgentError, match="closed"):
        agent.chat_stream("again")
    await agent.aclose()  # idempotent


async def test_repr_names_the_agent() -> None:
    agent = LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_name("Helper").build()
    assert "Helper" in repr(agent) and "scripted" in repr(agent)


async def test_chat_stream_with_messages_sends_them_instead_of_the_window() -> None:
    """A proxy's turn (``messages=``): the system prompt, then exactly the given messages; the window is not
    sent; the user text and the reply still join the history."""
    provider = ScriptedProvider(["one", "two"])
    agent = agent_with(provider, window=5)
    await agent.chat("earlier")
    given = [ChatMessage(role="user", content="a"), ChatMessage(role="assistant", content="b"),
             ChatMessage(role="user", content="c")]
    assert await agent.chat_stream("c", messages=given).text_async() == "two"
    sent, _ = provider.requests[-1]
    assert [(m.role, m.content) for m in sent] == [("system", "sys"), ("user", "a"), ("assistant", "b"),
                                                   ("user", "c")]
    assert [(m.role, m.content) for m in agent.history] == [
        ("system", "sys"), ("user", "earlier"), ("assistant", "one"), ("user", "c"), ("assistant", "two")]
    with pytest.raises(ConfigError, match="at least one message"):
        agent.chat_stream("c", messages=[])
