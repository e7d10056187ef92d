"""``POST /v1/responses/compact`` with the official ``openai`` client: the conversation so far summarised by the
model, stored as a compaction row the window then sends instead of the rows before it."""

from __future__ import annotations

import uuid

import openai
import pytest

from mofa_sdk.persistence import COMPACTION_ASK, connect_store
from tests.server.support import InProcess, auth, make_key, openai_client


async def test_compact_a_response_chain_then_continue_from_the_summary(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    r1 = await oa.responses.create(model="m", input="first words=2")
    r2 = await oa.responses.create(model="m", input="second words=2", previous_response_id=r1.id)
    # instructions "echo": the scripted model's summary is exactly what it was sent
    compacted = await oa.responses.compact(model="m", previous_response_id=r2.id, instructions="echo")
    summary = (f"user: first words=2\nassistant: {r1.output_text}\nuser: second words=2\n"
               f"assistant: {r2.output_text}\nuser: echo\n")
    assert compacted.object == "response.compaction" and compacted.id.startswith("resp_")
    *users, item = compacted.output
    assert [u.content[0].text for u in users] == ["first words=2", "second words=2"]  # type: ignore[union-attr,index]
    assert item.type == "compaction" and item.encrypted_content == summary
    assert compacted.usage.total_tokens > 0

    # the window now starts at the compaction: the summary is sent, the rows it summarises are not
    conv = (compacted.model_extra or {})["conversation"]
    r3 = await oa.responses.create(model="m", input="echo", conversation=conv)
    # (as a round: the question a compaction answers, and the summary as the model's answer)
    assert r3.output_text == f"user: {COMPACTION_ASK}\nassistant: {summary}\nuser: echo\n"
    store = await connect_store(in_app.db)
    try:
        rows = await store.get_session_messages(row.tenant_id, uuid.UUID(conv.removeprefix("conv_")))
    finally:
        await store.close()
    assert [(m.role, m.compaction) for m in rows] == [
        ("user", False), ("assistant", False), ("user", False), ("assistant", False), ("system", True),
        ("user", False), ("assistant", False)]
    assert rows[4].content == summary


async def test_an_input_list_alone_is_compacted_into_a_new_conversation(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    compacted = await oa.responses.compact(model="m", input=[
        {"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "where to?"},
        {"role": "user", "content": "Lisbon"}])
    *users, item = compacted.output
    assert len(users) == 2 and item.type == "compaction" and item.encrypted_content
    store = await connect_store(in_app.db)
    try:
        (session,) = await store.get_user_sessions(row.tenant_id, row.user_id)
        rows = await store.get_session_messages(row.tenant_id, session.id)
    finally:
        await store.close()
    assert [m.content for m in rows[:3]] == ["plan a trip", "where to?", "Lisbon"] and rows[3].compaction


async def test_nothing_to_compact_is_a_400_and_writes_nothing(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    r = await in_app.client.post(f"{in_app.url}/v1/responses/compact", headers=auth(key), json={"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    oa = openai_client(in_app.url, key, in_app.transport)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.compact(model="m", previous_response_id="resp_" + uuid.uuid4().hex)
    store = await connect_store(in_app.db)
    try:
        assert await store.get_user_sessions(row.tenant_id, row.user_id) == []
    finally:
        await store.close()


async def test_a_compaction_output_given_back_as_input_starts_a_new_chain(in_app: InProcess) -> None:
    """A stateless client passes /v1/responses/compact's output back as ``input``: the compaction item is sent
    as the window sends a stored one (the ask, the summary as the answer); the user messages before it, which
    it summarises and which no reply answers, are saved but not sent (the window leaves unanswered ones out)."""
    key, _ = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    compacted = await in_app.client.post(f"{in_app.url}/v1/responses/compact", headers=auth(key), json={
        "model": "m", "instructions": "echo", "input": [
            {"role": "user", "content": "code word: slate"}, {"role": "assistant", "content": "OK."},
            {"role": "user", "content": "compress"}]})
    items = compacted.json()["output"]  # as the client got them, given back as they are
    summary = items[-1]["encrypted_content"]
    r = await oa.responses.create(model="m", input=[*items, {"role": "user", "content": "echo"}])
    assert r.output_text == f"user: {COMPACTION_ASK}\nassistant: {summary}\nuser: echo\n"
    assert "code word: slate" in summary


async def test_compact_without_a_model_is_refused_naming_it(in_app: InProcess) -> None:
    key, _ = await make_key(in_app.db)
    r = await in_app.client.post(f"{in_app.url}/v1/responses/compact", headers=auth(key),
                                 json={"input": [{"role": "user", "content": "Compact this conversation."}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
