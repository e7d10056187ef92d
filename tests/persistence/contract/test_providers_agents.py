"""Providers and agents: CRUD, uniqueness per tenant, api keys encrypted at rest.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
)
from mofa_sdk.persistence import Store
from tests.support.builders import agent, provider, same


# -- providers and agents ---------------------------------------------------------------------------
async def test_provider_crud(store: Store, tenant: uuid.UUID) -> None:
    p = provider(tenant, "zeta", api_base="http://127.0.0.1:9/v1", api_key=SecretStr("sk-one"))
    created = await store.create_provider(p)
    assert created.api_key is not None and created.api_key.get_secret_value() == "sk-one"
    got = await store.get_provider(tenant, p.id)
    same(got, p, "api_key")
    assert got.api_key.get_secret_value() == "sk-one"
    await store.create_provider(provider(tenant, "alpha", provider_type="local", enabled=False))
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["alpha", "zeta"]
    assert [x.provider_name for x in await store.get_enabled_providers(tenant)] == ["zeta"]
    assert (await store.get_provider_by_name(tenant, "alpha")).provider_type == "local"
    assert await store.get_provider_by_name(tenant, "missing") is None

    changed = p.model_copy(
        update={"provider_name": "zeta2", "api_key": SecretStr("sk-two"), "enabled": False}
    )
    updated = await store.update_provider(changed)
    assert (updated.provider_name, updated.api_key.get_secret_value(), updated.enabled) == (
        "zeta2",
        "sk-two",
        False,
    )
    got = await store.get_provider(tenant, p.id)
    assert (got.provider_name, got.api_key.get_secret_value()) == ("zeta2", "sk-two")
    assert await store.get_enabled_providers(tenant) == []
    cleared = await store.update_provider(got.model_copy(update={"api_key": None}))
    assert cleared.api_key is None and (await store.get_provider(tenant, p.id)).api_key is None

    with pytest.raises(NotFoundError):
        await store.update_provider(provider(tenant, "ghost"))
    assert await store.delete_provider(tenant, p.id) is True
    assert await store.delete_provider(tenant, p.id) is False
    assert await store.get_provider(tenant, p.id) is None


async def test_provider_name_is_unique_per_tenant(store: Store, tenant: uuid.UUID) -> None:
    first = await store.create_provider(provider(tenant, "openai"))
    await store.create_provider(provider(uuid.uuid4(), "openai"))  # another tenant: fine
    with pytest.raises(ConflictError):
        await store.create_provider(provider(tenant, "openai"))
    with pytest.raises(ConflictError):
        await store.create_provider(first)  # same id
    second = await store.create_provider(provider(tenant, "vllm"))
    with pytest.raises(ConflictError):
        await store.update_provider(second.model_copy(update={"provider_name": "openai"}))
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["openai", "vllm"]


async def test_agent_crud(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant))
    a = agent(
        tenant,
        p.id,
        "writer",
        agent_order=2,
        context_limit=10,
        custom_params={"top_p": 0.9},
        max_completion_tokens=256,
        response_format={"type": "json_object"},
        system_prompt="Be brief.",
        temperature=0.7,
        stream=False,
        thinking={"budget": 100},
    )
    same(await store.create_agent(a), a)
    same(await store.get_agent(tenant, a.id), a)
    same(await store.get_agent_by_code_and_tenant(tenant, "writer"), a)
    await store.create_agent(agent(tenant, p.id, "b-helper", agent_order=1))
    await store.create_agent(agent(tenant, p.id, "a-helper", agent_order=1, agent_status=False))
    assert [x.agent_code for x in await store.list_agents(tenant)] == ["a-helper", "b-helper", "writer"]
    assert [x.agent_code for x in await store.get_active_agents(tenant)] == ["b-helper", "writer"]

    updated = await store.update_agent(
        a.model_copy(update={"agent_name": "Writer 2", "response_format": "text"})
    )
    assert (updated.agent_name, updated.response_format) == ("Writer 2", "text")
    assert (await store.get_agent(tenant, a.id)).agent_name == "Writer 2"
    with pytest.raises(NotFoundError):
        await store.update_agent(agent(tenant, p.id, "ghost"))
    with pytest.raises(NotFoundError):
        await store.update_agent(a.model_copy(update={"provider_id": uuid.uuid4()}))

    with pytest.raises(ConflictError):  # still used by agents
        await store.delete_provider(tenant, p.id)
    assert await store.get_provider(tenant, p.id) is not None
    assert await store.delete_agent(tenant, a.id) is True
    assert await store.delete_agent(tenant, a.id) is False
    assert await store.get_agent(tenant, a.id) is None


async def test_agent_code_is_unique_per_tenant(store: Store, tenant: uuid.UUID) -> None:
    other = uuid.uuid4()
    p = await store.create_provider(provider(tenant))
    p_other = await store.create_provider(provider(other))
    await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    await store.create_agent(agent(other, p_other.id, "chat-assistant"))  # same code, another tenant: fine
    with pytest.raises(ConflictError):
        await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    second = await store.create_agent(agent(tenant, p.id, "second"))
    with pytest.raises(ConflictError):
        await store.update_agent(second.model_copy(update={"agent_code": "chat-assistant"}))
    assert [x.agent_code for x in await store.list_agents(tenant)] == ["chat-assistant", "second"]


async def test_agent_needs_a_provider_of_its_tenant(store: Store, tenant: uuid.UUID) -> None:
    p_other = await store.create_provider(provider(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await store.create_agent(agent(tenant, uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await store.create_agent(agent(tenant, p_other.id))
    assert await store.list_agents(tenant) == []


async def test_agent_with_provider(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-x")))
    a = await store.create_agent(agent(tenant, p.id, "chat-assistant"))
    config = await store.get_agent_by_code_and_tenant_with_provider(tenant, "chat-assistant")
    assert config is not None
    assert (config.agent.id, config.provider.id) == (a.id, p.id)
    assert config.provider.api_key.get_secret_value() == "sk-x"
    assert (await store.get_agent_by_code_and_tenant_with_provider(str(tenant), "chat-assistant")) is not None
    assert await store.get_agent_by_code_and_tenant_with_provider(tenant, "missing") is None
    assert await store.get_agent_by_code_and_tenant_with_provider(uuid.uuid4(), "chat-assistant") is None


def _raw_api_key(store: Store, request: pytest.FixtureRequest, provider_id: uuid.UUID) -> str | None:
    """The api_key column as stored, read around the store with the database's own client."""
    if store.dialect == "sqlite":
        path: Path = request.getfixturevalue("sqlite_path")
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT api_key FROM entity_provider WHERE id = ?", (str(provider_id),)
            ).fetchone()
        return row[0]  # type: ignore[no-any-return]
    import psycopg

    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        row = conn.execute("SELECT api_key FROM entity_provider WHERE id = %s", (provider_id,)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def test_api_keys_are_encrypted_at_rest(
    store: Store, tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("MOFA_SECRET_KEY", "correct horse battery staple")
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-very-secret-123")))
    assert "sk-very-secret-123" not in repr(p) and "sk-very-secret-123" not in str(p)
    if store.dialect in ("sqlite", "postgres"):
        raw = _raw_api_key(store, request, p.id)
        assert raw is not None and raw.startswith("enc:") and "sk-very-secret-123" not in raw
    assert (await store.get_provider(tenant, p.id)).api_key.get_secret_value() == "sk-very-secret-123"

    monkeypatch.setenv("MOFA_SECRET_KEY", "a different key")
    with pytest.raises(ConfigError) as err:
        await store.get_provider(tenant, p.id)
    assert "sk-very-secret-123" not in str(err.value)
    monkeypatch.delenv("MOFA_SECRET_KEY")
    with pytest.raises(ConfigError):
        await store.list_providers(tenant)


async def test_api_keys_without_secret_are_stored_as_given(
    store: Store, tenant: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOFA_SECRET_KEY", raising=False)
    p = await store.create_provider(provider(tenant, api_key=SecretStr("sk-plain")))
    assert (await store.get_provider(tenant, p.id)).api_key.get_secret_value() == "sk-plain"
