"""``mofa serve`` answers every turn through the library's turn engine (issue 21): the local model's checks hold
through the service, the ledger records the model that answered, and a turn that cannot start leaves nothing
written (the engine writes a new session and the earlier input items with the user message, or nothing)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from mofa_sdk.entities import Message
from mofa_sdk.errors import DatabaseUnavailableError
from mofa_sdk.persistence import InMemoryStore, Store, connect_store, issue_api_key
from tests.server.support import ByContent, auth, in_process


async def _nothing_written(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    sessions = await store.get_user_sessions(tenant, user)
    assert sessions == [], sessions


@pytest.mark.local_model
async def test_the_local_models_checks_and_ledger_hold_through_the_service(tmp_path: Any) -> None:
    from mofa_sdk.llm import LocalProvider

    local = LocalProvider()
    db = f"sqlite:///{tmp_path / 'local.db'}"
    store = await connect_store(db)
    try:
        row, key = await issue_api_key(store, uuid.uuid4(), uuid.uuid4(), "test")
        async with in_process(store, local, db) as app:
            c = app.client
            for path, body in [("/v1/chat/completions", {"model": "gpt-4o", "messages": [
                                   {"role": "user", "content": "hi"}]}),
                               ("/v1/responses", {"model": "gpt-4o", "input": [
                                   {"role": "user", "content": "earlier"}, {"role": "user", "content": "hi"}]})]:
                r = await c.post(path, json=body, headers=auth(key))
                assert r.status_code == 400, r.text
                err = r.json()["error"]
                assert err["param"] == "model" and err["type"] == "invalid_request_error", err
                assert "gpt-4o" in err["message"] and local.default_model in err["message"], err
                await _nothing_written(store, row.tenant_id, row.user_id)
            # the model that answers is the one recorded, whatever name the request used for it
            r = await c.post("/v1/responses", json={"input": "Count to 100.", "max_output_tokens": 3,
                                                     "model": local.default_model.upper()}, headers=auth(key))
            assert r.status_code == 200, r.text
            assert r.json()["model"] == local.default_model
            reply = await store.get_message(row.tenant_id, uuid.UUID(r.json()["id"].removeprefix("resp_")))
            assert reply is not None
            call = await store.get_api_call_for_message(row.tenant_id, reply.id)
            assert call is not None and call.model_name == local.default_model and call.completion_tokens <= 3
    finally:
        await local.aclose()
        await store.close()


class RefusesUserMessages(InMemoryStore):
    """The database refuses the user message of a turn (its insert fails)."""

    async def save_message(self, message: Message, *, tx: Any = None) -> Message:
        if message.role == "user" and "refuse me" in message.content:
            raise DatabaseUnavailableError("saving the message: the database went away")
        return await super().save_message(message, tx=tx)

    async def save_messages(self, messages: Sequence[Message], *, tx: Any = None) -> list[Message]:
        # the served turn writes its user message and its reply's row in one batch
        if any(m.role == "user" and "refuse me" in m.content for m in messages):
            raise DatabaseUnavailableError("saving the messages: the database went away")
        return await super().save_messages(messages, tx=tx)


async def test_a_turn_that_cannot_start_leaves_nothing_written() -> None:
    store = RefusesUserMessages()
    row, key = await issue_api_key(store, uuid.uuid4(), uuid.uuid4(), "test")
    async with in_process(store, ByContent(3, 0.0), "memory://") as app:
        c = app.client
        # a new session with earlier input items: none of it is written when the user message cannot be
        body = {"input": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                          {"role": "user", "content": "three, refuse me"}]}
        r = await c.post("/v1/responses", json=body, headers=auth(key))
        assert r.status_code == 503, r.text
        await _nothing_written(store, row.tenant_id, row.user_id)
        r = await c.post("/v1/chat/completions", headers=auth(key), json={
            "model": "scripted-model", "messages": [{"role": "user", "content": "refuse me"}]})
        assert r.status_code == 503, r.text
        await _nothing_written(store, row.tenant_id, row.user_id)
        # an existing conversation keeps what it had: its earlier items of a refused turn are not written
        conv = (await c.post("/v1/conversations", json={"items": [{"role": "user", "content": "kept"}]},
                             headers=auth(key))).json()
        r = await c.post("/v1/responses", json={**body, "conversation": conv["id"]}, headers=auth(key))
        assert r.status_code == 503, r.text
        sid = uuid.UUID(conv["id"].removeprefix("conv_"))
        assert [m.content for m in await store.get_session_messages(row.tenant_id, sid)] == ["kept"]
        # and a turn that can start writes them all, in order, before its reply
        ok = {"input": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
                        {"role": "user", "content": "three"}], "conversation": conv["id"]}
        r = await c.post("/v1/responses", json=ok, headers=auth(key))
        assert r.status_code == 200, r.text
        rows = await store.get_session_messages(row.tenant_id, sid)
        assert [m.content for m in rows][:4] == ["kept", "one", "two", "three"] and rows[-1].role == "assistant"


async def test_the_engine_writes_a_new_session_with_its_first_turn_and_its_earlier_messages() -> None:
    """What the service asks of the turn engine: ``create_with_turn`` writes nothing on open; the first turn
    writes the session, its earlier messages and its user message together, and sends them within the window."""
    from mofa_sdk.llm import ChatMessage, ScriptedProvider
    from mofa_sdk.persistence import SettingsRequest, TurnEngine, TurnOptions

    store = InMemoryStore()
    provider = ScriptedProvider(["one", "two"], delta_delay=0.0)
    engine = TurnEngine(store, provider=provider)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    try:
        opened = await engine.open(tenant, user, None, SettingsRequest(system_prompt="Be brief.", window=1),
                                   create_with_turn=True)
        await _nothing_written(store, tenant, user)
        earlier = [ChatMessage(role="user", content="a", id=uuid.uuid4()), ChatMessage(role="assistant", content="b"),
                   ChatMessage(role="user", content="c"), ChatMessage(role="assistant", content="d")]
        started = opened.start("e", TurnOptions(earlier=earlier))
        assert await started.stream.text_async() == "one"
        sent, _ = provider.requests[-1]
        # the window (one round) over the earlier messages, after the session's system prompt
        assert [(m.role, m.content) for m in sent] == [("system", "Be brief."), ("user", "c"), ("assistant", "d"),
                                                        ("user", "e")]
        rows = await store.get_session_messages(tenant, opened.session_id)
        assert [(m.role, m.content) for m in rows] == [("user", "a"), ("assistant", "b"), ("user", "c"),
                                                        ("assistant", "d"), ("user", "e"), ("assistant", "one")]
        assert rows[0].id == earlier[0].id and rows[-2].id == started.user_message_id
        session = await store.get_session(tenant, opened.session_id)
        assert session is not None and session.settings is not None and session.settings.window == 1
        await opened.aclose()
    finally:
        await engine.aclose()
