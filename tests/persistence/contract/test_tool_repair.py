"""Tool calls a crash left without results: ``answer_interrupted_tool_calls`` records an ``interrupted``
error result for each, once, after the call. Part of the store contract (every store of ``store``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from mofa_sdk.entities import MessageToolCall, Session
from mofa_sdk.ids import utc_now
from mofa_sdk.llm import check_tool_sequence
from mofa_sdk.llm._window import INTERRUPTED_TOOL_RESULT
from mofa_sdk.persistence import Store
from mofa_sdk.persistence._chat_rows import chat_message
from tests.support.builders import msg, new_session

LONG_AGO = utc_now() - timedelta(hours=1)


async def _interrupted_turn(store: Store, s: Session, *call_ids: str, answered: tuple[str, ...] = (),
                            when: object = LONG_AGO) -> uuid.UUID:  # fmt: skip
    """A user message, an assistant message making ``call_ids`` (last written ``when``), the results of
    ``answered``: what a process killed while running tools leaves."""
    agent = uuid.uuid4()
    await store.save_message(msg(s, "weather in Paris and Rome?"))
    calls = [MessageToolCall(id=c, name="weather", arguments=f'{{"city": "{c}"}}') for c in call_ids]
    made = await store.save_message(msg(s, "", role="assistant", agent_id=agent, tool_calls=calls,
                                        create_time=when, update_time=when))  # fmt: skip
    for c in answered:
        await store.save_message(msg(s, f"sunny in {c}", role="tool", tool_call_id=c, parent_message_id=made.id))
    return made.id


async def test_each_unanswered_call_gets_one_recorded_result(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    made = await _interrupted_turn(store, s, "c1", "c2", "c3", answered=("c2",))
    recorded = await store.answer_interrupted_tool_calls(tenant, s.id)
    assert [(m.tool_call_id, m.seq) for m in recorded] == [("c1", 4), ("c3", 5)]  # call order, after the rest
    call_message = await store.get_message(tenant, made)
    assert call_message is not None
    for m in recorded:
        assert (m.role, m.content, m.status, m.is_error) == ("tool", INTERRUPTED_TOOL_RESULT, "interrupted", True)
        assert (m.parent_message_id, m.agent_id, m.user_id) == (made, call_message.agent_id, user)
        stored = await store.get_message(tenant, m.id)
        assert stored is not None and stored.model_dump() == m.model_dump()
    # idempotent: a second open records nothing more
    assert await store.answer_interrupted_tool_calls(tenant, s.id) == []
    rows = await store.get_session_messages(tenant, s.id)
    assert [m.tool_call_id for m in rows if m.role == "tool"] == ["c2", "c1", "c3"]
    check_tool_sequence([chat_message(m) for m in rows])  # every call answered: a strict provider takes it


async def test_a_call_of_a_live_turn_is_left_alone(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await _interrupted_turn(store, s, "c1", when=utc_now())  # written within the lease: its tool may be running
    assert await store.answer_interrupted_tool_calls(tenant, s.id) == []
    assert await store.count_session_messages(tenant, s.id) == 2


async def test_nothing_to_answer(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    assert await store.answer_interrupted_tool_calls(tenant, s.id) == []
    await _interrupted_turn(store, s, "c1", answered=("c1",))
    await store.save_message(msg(s, "It is sunny.", role="assistant"))
    assert await store.answer_interrupted_tool_calls(tenant, s.id) == []
    assert await store.answer_interrupted_tool_calls(tenant, uuid.uuid4()) == []  # no such session


async def test_only_the_tenants_own_session_is_repaired(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await _interrupted_turn(store, s, "c1")
    assert await store.answer_interrupted_tool_calls(uuid.uuid4(), s.id) == []
    assert await store.count_session_messages(tenant, s.id) == 2
    assert len(await store.answer_interrupted_tool_calls(tenant, s.id)) == 1


async def test_a_result_must_come_after_its_call(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    # call ids some servers reuse: an earlier call's result does not answer a later call of the same id
    s = await new_session(store, tenant, user)
    await _interrupted_turn(store, s, "call_0", answered=("call_0",))
    await _interrupted_turn(store, s, "call_0")
    [recorded] = await store.answer_interrupted_tool_calls(tenant, s.id)
    assert (recorded.tool_call_id, recorded.seq) == ("call_0", 6)


async def test_processes_repairing_at_once_answer_each_call_once(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    await _interrupted_turn(store, s, "c1", "c2")
    results = await asyncio.gather(*(store.answer_interrupted_tool_calls(tenant, s.id) for _ in range(6)))
    assert sorted(m.tool_call_id or "" for r in results for m in r) == ["c1", "c2"]
    rows = await store.get_session_messages(tenant, s.id)
    assert sorted(m.tool_call_id or "" for m in rows if m.role == "tool") == ["c1", "c2"]
    assert [m.seq for m in rows] == [1, 2, 3, 4]

