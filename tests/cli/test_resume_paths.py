"""A session resumes identically through ``mofa chat``, the library (quick helper, builder), the turn engine and
``mofa serve`` (issue 21): each keeps the window, system prompt, model and agent it was started with."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mofa_sdk.entities import Agent, Provider, SessionSettings
from mofa_sdk.llm import default_provider
from mofa_sdk.persistence import TurnEngine, issue_api_key, quick_agent
from tests.support.cli import Cli, session_id_in
from tests.support.fault_server import FaultServer
from tests.support.in_process import auth, in_process

REPLY = "tok0 tok1 tok2 "


def _sent(fault: FaultServer) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fault.requests[-1].body["messages"]]


def _rounds(*users: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for text in users:
        out += [("user", text), ("assistant", REPLY)]
    return out


async def _settings(cli: Cli, sid: str) -> tuple[dict[str, Any], list[str]]:
    store = await cli.store()
    try:
        session = await store.get_session(cli.tenant, uuid.UUID(sid))
    finally:
        await store.close()
    assert session is not None and session.settings is not None
    return session.settings.model_dump(exclude_unset=True), [c.key for c in session.settings_changes]


@pytest.fixture
def library_env(cli: Cli, fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's environment: the CLI's database and identity, the same OpenAI-compatible server."""
    for name, value in cli.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_BASE_URL", fault.base_url)
    monkeypatch.delenv("MOFA_MAX_TOKENS", raising=False)


@pytest.mark.usefixtures("library_env")
async def test_cli_then_library_then_engine_then_cli(cli: Cli, fault: FaultServer) -> None:
    first = await cli("chat", "--base-url", fault.base_url, "--model", "my-model", "--window", "2",
                      "--system", "You are a pirate", "--lines", input="a\nb\nc\n")
    assert first.exit_code == 0, first.output
    sid = session_id_in(first.stderr)
    started, _ = await _settings(cli, sid)

    # the quick helper, told nothing but the session
    agent = await quick_agent().with_session_id(sid).build_async()
    assert (agent.window, agent.system_prompt, agent.model) == (2, "You are a pirate", "my-model")
    await agent.chat("d")
    await agent.aclose()
    assert fault.requests[-1].body["model"] == "my-model"
    assert _sent(fault) == [("system", "You are a pirate"), *_rounds("b", "c"), ("user", "d")]

    # the turn engine
    store = await cli.store()
    engine = TurnEngine(store)
    try:
        opened = await engine.open(cli.tenant, cli.user, uuid.UUID(sid))
        assert (opened.agent.window, opened.agent.system_prompt, opened.agent.model) == (
            2, "You are a pirate", "my-model")
        assert opened.settings.agent is None and opened.config is None
        await opened.start("e").stream.text_async()
        await opened.aclose()
    finally:
        await engine.aclose()
        await store.close()
    assert _sent(fault) == [("system", "You are a pirate"), *_rounds("c", "d"), ("user", "e")]

    # mofa serve (in this process, its default provider the environment's, as `mofa serve` makes it): the
    # native API, then the Responses API on the same session as a conversation, told nothing but the session
    store = await cli.store()
    provider = default_provider()
    try:
        _, key = await issue_api_key(store, cli.tenant, cli.user, "resume")
        async with in_process(store, provider, cli.db_url) as served:
            r = await served.client.post(f"/v1/sessions/{sid}/messages", json={"content": "f"}, headers=auth(key))
            assert r.status_code == 200, r.text
            assert fault.requests[-1].body["model"] == "my-model"
            assert _sent(fault) == [("system", "You are a pirate"), *_rounds("d", "e"), ("user", "f")]
            r = await served.client.post("/v1/responses", headers=auth(key),
                                         json={"input": "g", "conversation": f"conv_{uuid.UUID(sid).hex}"})
            assert r.status_code == 200, r.text
            assert fault.requests[-1].body["model"] == "my-model"
            assert _sent(fault) == [("system", "You are a pirate"), *_rounds("e", "f"), ("user", "g")]
    finally:
        await provider.aclose()
        await store.close()

    # and the CLI again, told nothing but the session
    again = await cli("chat", "-s", sid, "--base-url", fault.base_url, "h")
    assert again.exit_code == 0, again.output
    assert fault.requests[-1].body["model"] == "my-model"
    assert _sent(fault) == [("system", "You are a pirate"), *_rounds("f", "g"), ("user", "h")]
    settings, changes = await _settings(cli, sid)
    assert settings == started and changes == []  # every path recorded the same, nothing changed


@pytest.mark.usefixtures("library_env")
async def test_an_agent_row_session_keeps_its_agent_on_every_path(cli: Cli, fault: FaultServer) -> None:
    store = await cli.store()
    try:
        row = await store.create_provider(Provider(tenant_id=cli.tenant, provider_name="fault",
                                                   provider_type="openai", api_base=fault.base_url))
        await store.create_agent(Agent(tenant_id=cli.tenant, agent_code="pirate", agent_name="Pirate",
                                       provider_id=row.id, model_name="row-model", system_prompt="Arr.",
                                       context_limit=1))
    finally:
        await store.close()
    first = await cli("chat", "--agent", "pirate", "--lines", input="a\nb\n")
    assert first.exit_code == 0, first.output
    sid = session_id_in(first.stderr)
    assert fault.requests[-1].body["model"] == "row-model"

    # the builder answers with its own provider, and leaves the session's agent as it was
    builder = quick_agent().with_session_id(sid)
    agent = await builder.build_async()
    assert (agent.window, agent.system_prompt) == (1, "Arr.")
    await agent.chat("c")
    await agent.aclose()
    settings, _ = await _settings(cli, sid)
    assert settings["agent"] == "pirate"

    store = await cli.store()
    engine = TurnEngine(store)
    try:
        opened = await engine.open(cli.tenant, cli.user, uuid.UUID(sid))  # no agent asked for
        assert opened.config is not None and opened.config.agent.agent_code == "pirate"
        await opened.start("d").stream.text_async()
        await opened.aclose()
    finally:
        await engine.aclose()
        await store.close()
    assert fault.requests[-1].body["model"] == "row-model"
    assert _sent(fault) == [("system", "Arr."), *_rounds("c"), ("user", "d")]

    again = await cli("chat", "-s", sid, "e")
    assert again.exit_code == 0, again.output
    assert fault.requests[-1].body["model"] == "row-model"
    assert _sent(fault) == [("system", "Arr."), *_rounds("d"), ("user", "e")]
    settings, _ = await _settings(cli, sid)
    assert SessionSettings(**settings).agent == "pirate"
