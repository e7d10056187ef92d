"""Opening a session whose history holds tool calls: the window loaded is one a strict provider accepts,
whatever a crash left (unanswered calls recorded as interrupted, or answered in memory when that cannot be
done), and old ``tool`` rows without a call id are not sent."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from mofa_sdk.entities import Message, MessageToolCall, Session
from mofa_sdk.errors import DatabaseUnavailableError
from mofa_sdk.ids import utc_now
from mofa_sdk.llm import ChatMessage, LLMAgentBuilder, ScriptedProvider, check_tool_sequence, select_window
from mofa_sdk.llm._window import INTERRUPTED_TOOL_RESULT
from mofa_sdk.persistence import PersistencePlugin, PostgresStore, Store
from mofa_sdk.persistence._plugin import _load_window
from tests.support.builders import msg, new_session

AGENT = uuid.UUID("019bda9f-0000-7000-8000-00000000a9e1")
LONG_AGO = utc_now() - timedelta(hours=1)


async def _killed_mid_tools(store: Store, s: Session, *, when: Any = LONG_AGO) -> uuid.UUID:
    """A finished round, then a round whose process died while running two tools (one result saved)."""
    await store.save_messages([msg(s, "hi"), msg(s, "Hello!", role="assistant"), msg(s, "weather?")])
    calls = [MessageToolCall(id="c1", name="weather", arguments="{}"), MessageToolCall(id="c2", name="time")]
    made = await store.save_message(msg(s, "Let me look.", role="assistant", create_time=when, update_time=when,
                                        tool_calls=calls))  # fmt: skip
    await store.save_message(msg(s, "12:00", role="tool", tool_call_id="c2"))
    return made.id


async def _next_turn(store: Store, tenant: uuid.UUID, user: uuid.UUID, sid: uuid.UUID) -> list[ChatMessage]:
    """What the provider is sent on the session's next turn."""
    provider = ScriptedProvider(["Sorry, the weather lookup was interrupted."])
    plugin = PersistencePlugin.from_store("p", store, user, tenant, AGENT, sid)
    agent = await (LLMAgentBuilder().with_provider(provider).with_sliding_window(None)
                   .with_persistence_plugin(plugin).build_async())  # fmt: skip
    await agent.chat("and now?")
    await agent.aclose()
    sent = provider.requests[-1][0]
    check_tool_sequence(sent)  # what OpenAI and strict providers require
    return sent


async def test_a_crash_mid_tools_is_recorded_and_the_next_turn_is_valid(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    made = await _killed_mid_tools(store, s)
    sent = await _next_turn(store, tenant, user, s.id)
    assert [(m.role, m.content, m.tool_call_id) for m in sent] == [
        ("user", "hi", None), ("assistant", "Hello!", None), ("user", "weather?", None),
        ("assistant", "Let me look.", None), ("tool", INTERRUPTED_TOOL_RESULT, "c1"), ("tool", "12:00", "c2"),
        ("user", "and now?", None),
    ]  # fmt: skip
    assert sent[4].is_error and sent[4].id is not None  # the recorded row, not an in-memory stand-in
    rows = await store.get_session_messages(tenant, s.id)
    [repair] = [m for m in rows if m.role == "tool" and m.tool_call_id == "c1"]
    assert (repair.status, repair.is_error, repair.parent_message_id, repair.seq) == ("interrupted", True, made, 6)
    assert [m.role for m in rows][6:] == ["user", "assistant"]  # the new turn after the repair


async def test_a_call_of_a_live_turn_is_answered_in_memory_only(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    s = await new_session(store, tenant, user)
    await _killed_mid_tools(store, s, when=utc_now())  # within the lease: its process may still run the tool
    with caplog.at_level(logging.WARNING, "mofa_sdk.persistence"):
        history = await _load_window(store, tenant, s.id, None)
    check_tool_sequence(history)
    assert [(m.content, m.id is None) for m in history if m.role == "tool"] == [(INTERRUPTED_TOOL_RESULT, True),
                                                                                ("12:00", False)]  # fmt: skip
    assert "'c1'" not in caplog.text and "c1" in caplog.text and "sent as interrupted" in caplog.text
    assert await store.count_session_messages(tenant, s.id) == 5  # nothing recorded


class _RepairFails:
    """The store, but the database goes away when the repair is written."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def answer_interrupted_tool_calls(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        raise DatabaseUnavailableError("the database went away")


async def test_a_repair_that_cannot_be_written_still_sends_a_valid_history(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    s = await new_session(store, tenant, user)
    await _killed_mid_tools(store, s)
    with caplog.at_level(logging.WARNING, "mofa_sdk.persistence"):
        history = await _load_window(_RepairFails(store), tenant, s.id, 5)
    check_tool_sequence(history)
    assert [m.content for m in history if m.role == "tool"] == [INTERRUPTED_TOOL_RESULT, "12:00"]
    assert "the database went away" in caplog.text
    assert await store.count_session_messages(tenant, s.id) == 5


async def test_old_tool_rows_without_a_call_id_are_not_sent(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    # as a program could store them before messages had tool fields: a tool row naming no call
    await store.save_messages([msg(s, "2+2?"), msg(s, "Let me compute.", role="assistant"),
                               msg(s, "4", role="tool"), msg(s, "It is 4.", role="assistant")])  # fmt: skip
    sent = await _next_turn(store, tenant, user, s.id)
    assert [(m.role, m.content) for m in sent] == [("user", "2+2?"), ("assistant", "Let me compute."),
                                                   ("assistant", "It is 4."), ("user", "and now?")]  # fmt: skip


async def test_a_narrow_window_keeps_calls_with_their_results(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, "q1"), msg(s, "r1", role="assistant"), msg(s, "q2"),
                               msg(s, "", role="assistant", tool_calls=[MessageToolCall(id="a", name="f"),
                                                                        MessageToolCall(id="b", name="g")]),
                               msg(s, "A", role="tool", tool_call_id="a"), msg(s, "B", role="tool", tool_call_id="b"),
                               msg(s, "r2", role="assistant")])  # fmt: skip
    history = await _load_window(store, tenant, s.id, 1)  # reads whole rounds, whatever their length
    check_tool_sequence(history)
    sent = select_window(history, None, system_prompt="", rounds=1)
    assert [m.content for m in sent] == ["q2", "", "A", "B", "r2"]


async def test_a_repair_waits_for_one_under_way(pg_url: str, tenant: uuid.UUID, user: uuid.UUID) -> None:
    """PostgreSQL, two connections: while another transaction holds the session row (a writer taking a seq,
    or a repair under way), a repair waits, then finds that transaction's answers instead of adding more."""
    first, second = await PostgresStore.connect(pg_url), await PostgresStore.connect(pg_url)
    try:
        s = await new_session(first, tenant, user)
        await _killed_mid_tools(first, s)
        async with await psycopg.AsyncConnection.connect(pg_url) as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM entity_session WHERE id = %s FOR UPDATE", (s.id,))
            both = asyncio.gather(first.answer_interrupted_tool_calls(tenant, s.id),
                                  second.answer_interrupted_tool_calls(tenant, s.id))  # fmt: skip
            await asyncio.sleep(0.5)  # both are waiting on the row now
        results = await both
        assert sorted(len(r) for r in results) == [0, 1]
        assert await first.count_session_messages(tenant, s.id) == 6
    finally:
        await first.close()
        await second.close()
