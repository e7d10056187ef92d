"""A turn with tools, persisted in order on every store: each model call its api-call row, the message making
calls saved (with its row, in one transaction) before any tool runs, each result as it arrives, then the
final reply under ``turn.reply_id``; a cancel mid-tool answers the open calls and says so."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from mofa_sdk.entities import Message
from mofa_sdk.llm import (
    ChatMessage,
    EventHandler,
    LLMAgent,
    LLMAgentBuilder,
    ScriptedProvider,
    ToolCall,
    Turn,
    check_tool_sequence,
)
from mofa_sdk.persistence import PersistencePlugin, QueryFilter, Store

AGENT = uuid.UUID("019bda9f-0000-7000-8000-00000000a9e1")


class NameReply(EventHandler):
    """Runs before the plugin and names the reply, as ``mofa serve`` does with its run id."""

    def __init__(self) -> None:
        self.reply_id = uuid.uuid4()

    async def before_call(self, turn: Turn) -> None:
        turn.reply_id = self.reply_id


async def build(store: Store, tenant: uuid.UUID, user: uuid.UUID, provider: Any, tools: list[Any],
                *, first: EventHandler | None = None, checkpoint_interval: float = 1.0) -> LLMAgent:
    plugin = PersistencePlugin.from_store("p", store, user, tenant, AGENT, checkpoint_interval=checkpoint_interval)
    builder = LLMAgentBuilder().with_provider(provider).with_tools(tools)
    if first is not None:
        builder = builder.with_event_handler(first)
    return await builder.with_persistence_plugin(plugin).build_async()


async def messages(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[Message]:
    return await store.get_session_messages(tenant, session)


async def test_a_tool_turn_is_saved_in_order(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    seen_at_run: list[list[str]] = []
    holder: dict[str, LLMAgent] = {}

    async def lookup(city: str) -> str:
        """Look a city up."""
        rows = await messages(store, tenant, holder["agent"].session_id)
        seen_at_run.append([m.role for m in rows])
        if city == "Oslo":  # the second call waits until the first one's result is saved
            for _ in range(200):
                rows = await messages(store, tenant, holder["agent"].session_id)
                if any(m.role == "tool" for m in rows):
                    break
                await asyncio.sleep(0.01)
            seen_at_run.append([m.role for m in rows])
        return f"{city}: sunny"

    calls = [ToolCall("c1", "lookup", '{"city": "Paris"}'), ToolCall("c2", "lookup", '{"city": "Oslo"}')]
    namer = NameReply()
    agent = holder["agent"] = await build(store, tenant, user, ScriptedProvider([["Looking. ", *calls], "Both sunny."]),
                                          [lookup], first=namer)
    stream = agent.chat_stream("weather?")
    assert await stream.text_async() == "Both sunny."
    # the assistant message with its calls was stored before any tool ran; the first result before the second
    assert seen_at_run[0] == ["user", "assistant"] and seen_at_run[-1] == ["user", "assistant", "tool"]
    rows = await messages(store, tenant, agent.session_id)
    assert [m.role for m in rows] == ["user", "assistant", "tool", "tool", "assistant"]
    step, paris, oslo, reply = rows[1], rows[2], rows[3], rows[4]
    assert step.content == "Looking. " and [c.id for c in step.tool_calls] == ["c1", "c2"]
    assert step.tool_calls[0].arguments == '{"city": "Paris"}' and step.status == "complete"
    assert (paris.tool_call_id, paris.content, paris.is_error) == ("c1", "Paris: sunny", False)
    assert oslo.tool_call_id == "c2"
    assert reply.id == namer.reply_id and reply.content == "Both sunny." and reply.status == "complete"
    assert step.id == stream.steps[0].message.id != namer.reply_id
    api = sorted(await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=agent.session_id)),
                 key=lambda c: c.create_time)
    assert [c.response_message_id for c in api] == [step.id, reply.id]
    assert all(c.request_message_id == rows[0].id and c.status == "success" for c in api)
    check_tool_sequence([ChatMessage(m.role, m.content, tool_calls=tuple(ToolCall(c.id, c.name, c.arguments)
                                                                        for c in m.tool_calls),
                                     tool_call_id=m.tool_call_id, is_error=m.is_error) for m in rows])


async def test_text_checkpointed_before_the_calls_moves_to_the_step_row(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    def ping() -> str:
        """Pong."""
        return "pong"

    provider = ScriptedProvider([["one ", "two ", "three ", ToolCall("p", "ping", "{}")], "done"], delta_delay=0.02)
    agent = await build(store, tenant, user, provider, [ping], checkpoint_interval=0.01)
    stream = agent.chat_stream("go")
    assert await stream.text_async() == "done"
    rows = await messages(store, tenant, agent.session_id)
    assert [(m.role, m.content) for m in rows] == [
        ("user", "go"), ("assistant", "one two three "), ("tool", "pong"), ("assistant", "done"),
    ]
    assert rows[1].tool_calls and not rows[3].tool_calls


async def test_cancel_mid_tool_saves_the_open_calls_as_cancelled(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    started = asyncio.Event()

    async def hang() -> str:
        """Never ends."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    def quick() -> str:
        """Quick."""
        return "quick"

    calls = [ToolCall("h", "hang", "{}"), ToolCall("q", "quick", "{}")]
    agent = await build(store, tenant, user, ScriptedProvider([calls, "x"]), [hang, quick])
    stream = agent.chat_stream("go")

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert stream.status == "cancelled"
    rows = await messages(store, tenant, agent.session_id)
    assert [m.role for m in rows] == ["user", "assistant", "tool", "tool"]
    results = {m.tool_call_id: m for m in rows if m.role == "tool"}
    assert results["q"].content == "quick" and results["q"].status == "complete"
    assert results["h"].is_error and results["h"].status == "cancelled" and "cancelled" in results["h"].content
    api = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=agent.session_id))
    assert len(api) == 1 and api[0].response_message_id == rows[1].id


async def test_calls_returned_to_a_messages_caller_are_saved_with_the_reply(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    call = ToolCall("c", "ext", '{"a": 1}')
    agent = await build(store, tenant, user, ScriptedProvider([["Calling. ", call]]), [])
    stream = agent.chat_stream("go", messages=[ChatMessage("user", "go")])
    await stream.text_async()
    rows = await messages(store, tenant, agent.session_id)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[1].content == "Calling. " and [c.id for c in rows[1].tool_calls] == ["c"]


async def test_a_tool_running_past_the_lease_is_not_answered_interrupted_by_another_process(
    tmp_path: Any, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """While a tool runs, its step's row is kept fresh: a second process opening the session (its repair of
    unanswered calls) sees a live turn and records nothing, and the tool's real result is the one answer."""
    from mofa_sdk.persistence import SqliteStore

    url = f"sqlite:///{tmp_path / 'lease.db'}"
    store = await SqliteStore.connect(url, streaming_lease_seconds=0.3)
    other = await SqliteStore.connect(url, streaming_lease_seconds=0.3)
    repaired: list[Message] = []
    holder: dict[str, LLMAgent] = {}

    async def slow(city: str) -> str:
        """Takes a while."""
        await asyncio.sleep(0.9)  # three leases
        repaired.extend(await other.answer_interrupted_tool_calls(tenant, holder["agent"].session_id))
        await asyncio.sleep(0.3)
        return f"done for {city}"

    call = ToolCall("call_slow", "slow", '{"city": "Oslo"}')
    agent = await build(store, tenant, user, ScriptedProvider([[call], "Finished."]), [slow])
    holder["agent"] = agent
    try:
        assert await agent.chat("go") == "Finished."
        assert repaired == []
        rows = await messages(store, tenant, agent.session_id)
        results = [r for r in rows if r.role == "tool"]
        assert [(r.tool_call_id, r.content, r.is_error) for r in results] == [("call_slow", "done for Oslo", False)]
    finally:
        await agent.aclose()
        await other.close()
        await store.close()
