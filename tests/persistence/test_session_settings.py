"""A session keeps the system prompt it was started with (issue 15 item 2): a resumed session gets it back
when the builder sets none, and a different one replaces it with the change recorded. On every store."""

from __future__ import annotations

import uuid

from mofa_sdk.llm import LLMAgent, LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, Store


async def _agent(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, provider: ScriptedProvider,
    session: uuid.UUID | None = None, system: str | None = None,
) -> LLMAgent:
    builder = LLMAgentBuilder().with_provider(provider).with_user(user).with_tenant(tenant)
    if system is not None:
        builder.with_system_prompt(system)
    if session is not None:
        builder.with_session_id(session)
    return await builder.with_persistence_plugin(
        PersistencePlugin.from_store("p", store, user, tenant, uuid.uuid4())
    ).build_async()


async def test_resume_restores_the_system_prompt(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    provider = ScriptedProvider(["Arr."])
    first = await _agent(store, tenant, user, provider, system="You are a pirate.")
    await first.chat("hello")
    sid = first.session_id
    await first.aclose()

    again = await _agent(store, tenant, user, provider, session=sid)  # no system prompt set
    assert again.system_prompt == "You are a pirate."
    await again.chat("more")
    assert provider.requests[-1][0][0].role == "system"
    assert provider.requests[-1][0][0].content == "You are a pirate."
    await again.aclose()

    session = await store.get_session(tenant, sid)
    assert session is not None
    assert session.settings is not None
    # the builder records what answers (issue 21), as the CLI and the service do
    assert session.settings.model_dump(exclude_unset=True) == {
        "provider": "scripted", "model": "scripted-model", "system_prompt": "You are a pirate.", "window": None,
    }
    assert session.settings_changes == []
    assert session.metadata == {}


async def test_an_override_replaces_it_and_is_recorded(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    provider = ScriptedProvider(["ok"])
    first = await _agent(store, tenant, user, provider, system="Be terse.")
    sid = first.session_id
    await first.aclose()
    second = await _agent(store, tenant, user, provider, session=sid, system="Be verbose.")
    assert second.system_prompt == "Be verbose."
    await second.aclose()
    third = await _agent(store, tenant, user, provider, session=sid)
    assert third.system_prompt == "Be verbose."  # the override is what the session now keeps
    await third.aclose()
    session = await store.get_session(tenant, sid)
    assert session is not None
    [change] = session.settings_changes
    assert (change.key, change.old, change.new) == ("system_prompt", "Be terse.", "Be verbose.")


async def test_a_session_started_without_one_stays_without(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    agent = await _agent(store, tenant, user, ScriptedProvider(["ok"]))
    sid = agent.session_id
    await agent.aclose()
    again = await _agent(store, tenant, user, ScriptedProvider(["ok"]), session=sid)
    assert again.system_prompt == ""
    await again.aclose()
    session = await store.get_session(tenant, sid)
    assert session is not None and session.settings is not None
    assert session.settings.system_prompt == "" and session.settings_changes == []


async def test_the_builder_restores_window_and_cap_and_the_model_on_its_provider(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    provider = ScriptedProvider(["one", "two"], default_model="m1")

    async def build(p: ScriptedProvider, session: uuid.UUID | None = None, **given: int | str) -> LLMAgent:
        builder = LLMAgentBuilder().with_provider(p).with_user(user).with_tenant(tenant)
        if "window" in given:
            builder.with_sliding_window(int(given["window"]))
        if "model" in given:
            builder.with_model(str(given["model"]))
        if "max_tokens" in given:
            builder.with_max_tokens(int(given["max_tokens"]))
        if session is not None:
            builder.with_session_id(session)
        return await builder.with_persistence_plugin(
            PersistencePlugin.from_store("p", store, user, tenant, uuid.uuid4())).build_async()

    first = await build(provider, window=1, model="m2", max_tokens=50)
    await first.chat("a")
    await first.chat("b")
    sid = first.session_id
    await first.aclose()

    again = await build(provider, sid)  # told nothing: the session's own
    assert (again.window, again.model, again.params.max_tokens) == (1, "m2", 50)
    await again.chat("c")
    await again.aclose()
    assert [m.content for m in provider.requests[-1][0]] == ["b", "two", "c"]

    other = ScriptedProvider(["x"], default_model="o1")
    other.name = "elsewhere"  # another provider: the model is its own, the rest is the session's
    moved = await build(other, sid)
    assert (moved.window, moved.model, moved.params.max_tokens) == (1, "o1", 50)
    await moved.aclose()
    session = await store.get_session(tenant, sid)
    assert session is not None
    assert {c.key for c in session.settings_changes} == {"provider", "model"}
