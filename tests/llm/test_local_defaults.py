"""The local model's own defaults live in ``LocalProvider`` (issue 21): its reply cap and its one model name
hold on every path (the provider alone, the builder, a persisted agent), and the ledger records the model
that answered. On the real SmolLM2 model."""

from __future__ import annotations

import uuid

import pytest

from mofa_sdk.entities import Agent, AgentConfig, Provider, QueryFilter
from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import LLMAgentBuilder
from mofa_sdk.llm._local import LOCAL_MAX_TOKENS, LocalProvider
from mofa_sdk.llm._provider import ChatParams, Finish, TextDelta, UsageReport
from mofa_sdk.llm._types import ChatMessage
from mofa_sdk.persistence import InMemoryStore, PersistencePlugin

pytestmark = pytest.mark.local_model

LONG = [ChatMessage("user", "Count from 1 to 500, one number per line.")]


@pytest.fixture(autouse=True)
def _no_env_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOFA_MAX_TOKENS", raising=False)


def test_the_default_cap_and_what_wins_over_it(monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalProvider()
    assert local.default_max_tokens == LOCAL_MAX_TOKENS == 512
    asked = ChatParams(model=local.default_model)
    assert local.apply_defaults(asked).max_tokens == 512
    assert local.apply_defaults(ChatParams(model=local.default_model, max_tokens=7)).max_tokens == 7
    assert LocalProvider(max_tokens=40).default_max_tokens == 40
    monkeypatch.setenv("MOFA_MAX_TOKENS", "33")
    assert LocalProvider().default_max_tokens == 33
    with pytest.raises(ConfigError, match="max_tokens"):
        LocalProvider(max_tokens=0)


async def test_a_request_without_a_cap_stops_at_the_providers() -> None:
    local = LocalProvider(max_tokens=6, seed=3)
    events = [e async for e in local.stream(LONG, ChatParams(model=local.default_model, temperature=0.0))]
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "length"
    assert usage.completion_tokens == 6


async def test_another_model_name_is_refused_naming_the_fix() -> None:
    local = LocalProvider()
    with pytest.raises(ConfigError) as info:
        [e async for e in local.stream(LONG, ChatParams(model="gpt-4o"))]
    text = str(info.value)
    assert "gpt-4o" in text and local.default_model in text and "OPENAI_BASE_URL" in text
    # the name in another case is the same model, reported under its own spelling
    params = ChatParams(model=local.default_model.upper(), max_tokens=3)
    events = [e async for e in local.stream(LONG, params)]
    assert any(isinstance(e, TextDelta) for e in events)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.model == local.default_model


def test_the_builder_refuses_another_model_and_caps_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalProvider()
    with pytest.raises(ConfigError, match="gpt-4o"):
        LLMAgentBuilder().with_provider(local).with_model("gpt-4o").build()
    agent = LLMAgentBuilder().with_provider(local).build()
    assert agent.params.max_tokens == 512 and agent.model == local.default_model
    assert LLMAgentBuilder().with_provider(local).with_max_tokens(64).build().params.max_tokens == 64
    monkeypatch.setenv("MOFA_MAX_TOKENS", "48")
    assert LLMAgentBuilder.from_env(provider=local).build().params.max_tokens == 48


def _local_row(**agent_fields: object) -> AgentConfig:
    tenant = uuid.uuid4()
    provider = Provider(tenant_id=tenant, provider_name="here", provider_type="local", )
    agent = Agent(tenant_id=tenant, agent_code="smol", agent_name="Smol", provider_id=provider.id,
                  model_name=LocalProvider().default_model, **agent_fields)  # type: ignore[arg-type]
    return AgentConfig(agent=agent, provider=provider)


def test_an_agent_row_on_the_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LLMAgentBuilder.from_agent_config(_local_row()).build().params.max_tokens == 512
    row = _local_row(max_completion_tokens=100)
    assert LLMAgentBuilder.from_agent_config(row).build().params.max_tokens == 100
    monkeypatch.setenv("MOFA_MAX_TOKENS", "21")  # the environment's cap wins where the row has none
    assert LLMAgentBuilder.from_agent_config(_local_row()).build().params.max_tokens == 21


async def test_a_persisted_agent_records_the_model_that_answered() -> None:
    store = InMemoryStore()
    tenant, user = uuid.uuid4(), uuid.uuid4()
    local = LocalProvider(max_tokens=4, seed=1)

    def plugin() -> PersistencePlugin:
        return PersistencePlugin.from_store("p", store, user, tenant, uuid.uuid4())

    # a model it cannot serve: refused before a session is made
    with pytest.raises(ConfigError, match="gpt-4o"):
        await LLMAgentBuilder().with_provider(local).with_model("gpt-4o").with_persistence_plugin(
            plugin()).build_async()
    assert await store.get_user_sessions(tenant, user) == []

    agent = await (LLMAgentBuilder().with_provider(local).with_model(local.default_model.lower())
                   .with_user(user).with_tenant(tenant).with_persistence_plugin(plugin()).build_async())
    stream = agent.chat_stream("Count from 1 to 500.")
    await stream.text_async()
    await agent.aclose()
    assert stream.model == local.default_model
    [call] = await store.query_api_calls(QueryFilter(tenant_id=tenant))
    assert call.model_name == local.default_model
    assert call.completion_tokens is not None and call.completion_tokens <= 4
