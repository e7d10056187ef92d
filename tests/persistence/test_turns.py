"""The turn engine (issue 21): one session read, one chooser, settings recorded in one write, typed ids.
On every store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mofa_sdk.entities import Agent, Provider, SessionSettings
from mofa_sdk.errors import ConfigError, NotFoundError, TenantMismatchError
from mofa_sdk.llm import EventHandler, ScriptedProvider, Turn
from mofa_sdk.persistence import (
    PersistencePlugin,
    SettingsRequest,
    Store,
    TurnEngine,
    TurnOptions,
)
from tests.support.fault_server import FaultServer


class Counting:
    """The store, counting the calls the engine makes (by name)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if callable(value) and not name.startswith("_") and name != "transaction":
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return value(*args, **kwargs)

            return counted
        return value


def _counting(store: Store) -> tuple[Store, Counting]:
    counting = Counting(store)
    return counting, counting  # type: ignore[return-value]


async def _turn(engine: TurnEngine, tenant: uuid.UUID, user: uuid.UUID, sid: uuid.UUID | None, text: str,
                request: SettingsRequest | None = None) -> uuid.UUID:
    opened = await engine.open(tenant, user, sid, request)
    await opened.start(text).stream.text_async()
    await opened.aclose()
    return opened.session_id


async def test_a_new_session_is_created_with_its_settings(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    provider = ScriptedProvider(["Arr."])
    counted, counting = _counting(store)
    engine = TurnEngine(counted, provider=provider)
    opened = await engine.open(tenant, user, None, SettingsRequest(system_prompt="Be a pirate.", window=2))
    assert opened.created and counting.calls == ["create_session"]  # one write, nothing read
    session = await store.get_session(tenant, opened.session_id)
    assert session is not None and session.settings is not None
    assert session.settings.model_dump(exclude_unset=True) == {
        "agent": None, "provider": "scripted", "model": "scripted-model", "system_prompt": "Be a pirate.",
        "window": 2,
    }
    assert session.settings_changes == []
    assert (opened.agent.window, opened.agent.system_prompt) == (2, "Be a pirate.")
    await opened.aclose()


async def test_resume_reads_the_session_once_and_keeps_its_settings(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    provider = ScriptedProvider(["one", "two", "three", "four"])
    engine = TurnEngine(store, provider=provider)
    sid = await _turn(engine, tenant, user, None, "a", SettingsRequest(system_prompt="Terse.", window=1))

    counted, counting = _counting(store)
    again = await TurnEngine(counted, provider=provider).open(tenant, user, sid)
    # one read of the session, nothing written (nothing changed), one window read
    assert counting.calls == ["get_session", "mark_interrupted", "get_last_messages"]
    assert (again.agent.window, again.agent.system_prompt) == (1, "Terse.")
    await again.start("c").stream.text_async()
    await again.aclose()
    sent = [(m.role, m.content) for m in provider.requests[-1][0]]
    assert sent == [("system", "Terse."), ("user", "a"), ("assistant", "one"), ("user", "c")]
    await _turn(engine, tenant, user, sid, "d")  # the window holds one round
    sent = [(m.role, m.content) for m in provider.requests[-1][0]]
    assert sent == [("system", "Terse."), ("user", "c"), ("assistant", "two"), ("user", "d")]


async def test_a_change_is_recorded_with_the_settings_in_one_write(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    engine = TurnEngine(store, provider=ScriptedProvider(["ok"]))
    sid = await _turn(engine, tenant, user, None, "a", SettingsRequest(system_prompt="Terse.", window=3))
    counted, counting = _counting(store)
    opened = await TurnEngine(counted, provider=ScriptedProvider(["ok"])).open(
        tenant, user, sid, SettingsRequest(window=None)
    )
    assert counting.calls.count("record_session_settings") == 1 and "update_session" not in counting.calls
    assert opened.agent.window is None and opened.agent.system_prompt == "Terse."
    await opened.aclose()
    session = await store.get_session(tenant, sid)
    assert session is not None and session.settings is not None
    assert session.settings.window is None and "window" in session.settings.model_fields_set
    [change] = session.settings_changes
    assert (change.key, change.old, change.new) == ("window", 3, None)


async def test_one_turns_options_are_not_recorded(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    provider = ScriptedProvider(["ok"])
    engine = TurnEngine(store, provider=provider)
    opened = await engine.open(tenant, user, None, SettingsRequest(system_prompt="Kept."))
    started = opened.start("hi", TurnOptions(system_prompt="Just once.", temperature=0.5, max_tokens=9,
                                             extra={"top_p": 0.5}))
    await started.stream.text_async()
    messages, params = provider.requests[-1]
    assert messages[0].content == "Just once."
    assert (params.temperature, params.max_tokens, params.extra) == (0.5, 9, {"top_p": 0.5})
    await opened.start("again").stream.text_async()
    messages, params = provider.requests[-1]
    assert messages[0].content == "Kept." and params.temperature is None and params.extra == {}
    await opened.aclose()
    session = await store.get_session(tenant, opened.session_id)
    assert session is not None and session.settings is not None
    assert session.settings.system_prompt == "Kept." and session.settings_changes == []


async def test_a_started_turn_names_its_rows(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    seen: list[uuid.UUID | None] = []

    class After(EventHandler):
        async def before_call(self, turn: Turn) -> None:  # after the plugin: the user message is saved
            seen.append(turn.user_message_id)

    engine = TurnEngine(store, provider=ScriptedProvider(["ok"]))
    opened = await engine.open(tenant, user)
    reply_id = uuid.uuid4()
    started = opened.start("hi", TurnOptions(reply_id=reply_id, handlers=[After()],
                                             request_params={"model": "x", "store": True}))
    assert started.reply_id == reply_id and started.user_message_id is None and started.api_call_id is None
    await started.stream.text_async()
    await opened.aclose()
    assert started.user_message_id is not None and seen == [started.user_message_id]
    user_row = await store.get_message(tenant, started.user_message_id)
    reply = await store.get_message(tenant, reply_id)
    assert user_row is not None and user_row.role == "user"
    assert user_row.request_params == {"model": "x", "store": True}
    assert reply is not None and reply.parent_message_id == started.user_message_id
    assert started.api_call_id is not None
    call = await store.get_api_call(tenant, started.api_call_id)
    assert call is not None and call.request_message_id == started.user_message_id
    assert call.response_message_id == reply_id


async def test_another_users_session_is_refused_with_nothing_written(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    engine = TurnEngine(store, provider=ScriptedProvider(["ok"]))
    sid = await _turn(engine, tenant, user, None, "mine")
    before = await store.get_session(tenant, sid)
    with pytest.raises(TenantMismatchError):
        await engine.open(tenant, uuid.uuid4(), sid, SettingsRequest(window=1))
    assert before is not None
    with pytest.raises(TenantMismatchError):  # a row read by the caller is checked too
        await engine.open(tenant, uuid.uuid4(), before)
    after = await store.get_session(tenant, sid)
    assert after == before


async def test_an_id_nobody_holds_starts_a_session_under_it(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    sid = uuid.uuid4()
    opened = await TurnEngine(store, provider=ScriptedProvider(["ok"])).open(tenant, user, sid)
    assert opened.created and opened.session_id == sid
    await opened.aclose()


async def test_an_agent_row_is_chosen_then_restored(
    db_store: Store, tenant: uuid.UUID, user: uuid.UUID, fault: FaultServer
) -> None:
    store = db_store
    row = await store.create_provider(Provider(tenant_id=tenant, provider_name="fault", provider_type="openai",
                                               api_base=fault.base_url))
    await store.create_agent(Agent(tenant_id=tenant, agent_code="pirate", agent_name="Pirate",
                                   provider_id=row.id, model_name="row-model", system_prompt="Arr.",
                                   context_limit=4))
    default = ScriptedProvider(["from the default"])
    engine = TurnEngine(store, provider=default)
    sid = await _turn(engine, tenant, user, None, "hi", SettingsRequest(agent="pirate"))
    assert fault.requests[-1].body["model"] == "row-model"
    again = await engine.open(tenant, user, sid)  # no agent asked for: the one the session recorded
    assert again.config is not None and again.config.agent.agent_code == "pirate"
    assert (again.agent.window, again.agent.system_prompt) == (4, "Arr.")
    await again.start("more").stream.text_async()
    await again.aclose()
    assert len(fault.requests) == 2 and default.requests == []
    # back to the default provider, asked for: recorded as a change
    await _turn(engine, tenant, user, sid, "plain", SettingsRequest(agent=None))
    assert len(default.requests) == 1
    session = await store.get_session(tenant, sid)
    assert session is not None and session.settings is not None and session.settings.agent is None
    assert {c.key for c in session.settings_changes} >= {"agent", "provider", "model"}


async def test_an_unknown_agent_is_refused_with_nothing_written(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    engine = TurnEngine(store, provider=ScriptedProvider(["ok"]))
    with pytest.raises(NotFoundError, match="no-such-agent"):
        await engine.open(tenant, user, None, SettingsRequest(agent="no-such-agent"))
    assert await store.get_user_sessions(tenant, user) == []


async def test_the_default_provider_is_made_once(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, monkeypatch: pytest.MonkeyPatch, fault: FaultServer
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fault.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    engine = TurnEngine(store)
    a = await engine.open(tenant, user)
    b = await engine.open(tenant, user)
    assert a.agent.provider is b.agent.provider is engine.default_provider
    await a.aclose()
    await b.aclose()
    await engine.aclose()


def test_settings_request_fields_match_the_recorded_settings() -> None:
    # every setting a request can ask for is one the session records
    asked = set(SettingsRequest.__dataclass_fields__)
    assert asked <= set(SessionSettings.model_fields) and "provider" not in asked


@pytest.mark.local_model
async def test_the_local_model_through_the_engine(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    from mofa_sdk.llm import LOCAL_MAX_TOKENS, LocalProvider

    local = LocalProvider()
    engine = TurnEngine(store, provider=local)
    with pytest.raises(ConfigError, match="gpt-4o"):
        await engine.open(tenant, user, None, SettingsRequest(model="gpt-4o"))
    assert await store.get_user_sessions(tenant, user) == []
    opened = await engine.open(tenant, user)
    assert opened.agent.params.max_tokens == LOCAL_MAX_TOKENS and opened.agent.model == local.default_model
    started = opened.start("Count from 1 to 100.", TurnOptions(max_tokens=3))
    await started.stream.text_async()
    await opened.aclose()
    assert started.api_call_id is not None
    call = await store.get_api_call(tenant, started.api_call_id)
    assert call is not None and call.model_name == local.default_model and call.completion_tokens <= 3


async def test_a_plugin_given_the_row_does_not_read_it_again(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    engine = TurnEngine(store, provider=ScriptedProvider(["ok"]))
    sid = await _turn(engine, tenant, user, None, "a")
    row = await store.get_session(tenant, sid)
    assert row is not None
    counted, counting = _counting(store)
    plugin = PersistencePlugin.from_store("p", counted, user, tenant, uuid.uuid4(), sid)
    plugin.adopt(row)
    assert (await plugin.open_session(sid, window=None, user_id=user, tenant_id=tenant,
                                      agent_id=uuid.uuid4()))[0] == sid
    assert "get_session" not in counting.calls
    plugin.adopt(row)
    with pytest.raises(TenantMismatchError):  # never for another owner
        await plugin.open_session(sid, window=None, user_id=uuid.uuid4(), tenant_id=tenant,
                                  agent_id=uuid.uuid4())
