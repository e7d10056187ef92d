"""``providers edit|remove``, ``agents edit|remove`` and ``mofa models`` (issue 15 item 9)."""

from __future__ import annotations

from tests.support.cli import Cli, one_error_line
from tests.support.fault_server import FaultServer

KEY = "sk-test-0123456789abcdefWXYZ"
NEW_KEY = "sk-test-9876543210fedcbaQRST"


async def test_provider_edit_and_remove(cli: Cli, fault: FaultServer) -> None:
    assert (await cli("providers", "add", "p1", "--api-base", "http://127.0.0.1:9/v1", "--api-key-env", "K",
                      env={"K": KEY})).exit_code == 0
    edited = await cli("providers", "edit", "p1", "--name", "p2", "--api-base", fault.base_url,
                       "--api-key-env", "K", env={"K": NEW_KEY})
    assert edited.exit_code == 0, edited.output
    assert NEW_KEY not in edited.output
    store = await cli.store()
    try:
        assert await store.get_provider_by_name(cli.tenant, "p1") is None
        row = await store.get_provider_by_name(cli.tenant, "p2")
        assert row is not None and row.api_base == fault.base_url
        assert row.api_key is not None and row.api_key.get_secret_value() == NEW_KEY
    finally:
        await store.close()
    assert "nothing to change" in one_error_line(await cli("providers", "edit", "p2"))
    assert "--api-base" in one_error_line(await cli("providers", "edit", "p2", "--api-base", "ftp://x"))
    assert "absent" in one_error_line(await cli("providers", "edit", "absent", "--name", "x"))

    assert (await cli("agents", "add", "a1", "--provider", "p2", "--model", "m")).exit_code == 0
    line = one_error_line(await cli("providers", "remove", "p2"))
    assert "used by agent a1" in line
    removed_agent = await cli("agents", "remove", "a1")
    assert removed_agent.exit_code == 0, removed_agent.output
    removed = await cli("providers", "remove", "p2")
    assert removed.exit_code == 0, removed.output
    store = await cli.store()
    try:
        assert await store.list_providers(cli.tenant) == [] and await store.list_agents(cli.tenant) == []
    finally:
        await store.close()


async def test_agent_edit_changes_what_the_chat_sends(cli: Cli, fault: FaultServer) -> None:
    assert (await cli("providers", "add", "srv", "--api-base", fault.base_url)).exit_code == 0
    assert (await cli("providers", "add", "other", "--api-base", fault.base_url)).exit_code == 0
    assert (await cli("agents", "add", "bot", "--provider", "srv", "--model", "m1", "--window", "2")).exit_code == 0
    edited = await cli("agents", "edit", "bot", "--model", "m2", "--system", "Be kind.", "--provider", "other",
                       "--all-rounds", "--max-tokens", "50")
    assert edited.exit_code == 0, edited.output
    store = await cli.store()
    try:
        agent = await store.get_agent_by_code_and_tenant(cli.tenant, "bot")
        other = await store.get_provider_by_name(cli.tenant, "other")
    finally:
        await store.close()
    assert agent is not None and other is not None
    assert (agent.model_name, agent.system_prompt, agent.provider_id, agent.context_limit,
            agent.max_completion_tokens) == ("m2", "Be kind.", other.id, None, 50)
    chat = await cli("chat", "--agent", "bot", "hi")
    assert chat.exit_code == 0, chat.output
    body = fault.requests[-1].body
    assert body["model"] == "m2" and body["messages"][0] == {"role": "system", "content": "Be kind."}
    assert "nothing to change" in one_error_line(await cli("agents", "edit", "bot"))
    assert "ghost" in one_error_line(await cli("agents", "remove", "ghost"))


async def test_models_lists_what_each_provider_offers(cli: Cli, fault: FaultServer) -> None:
    from mofa_sdk.llm._local import find_default_model

    gguf = find_default_model()
    assert (await cli("providers", "add", "on-disk", "--type", "local", "--api-base", str(gguf))).exit_code == 0
    assert (await cli("providers", "add", "down", "--api-base", "http://127.0.0.1:9/v1", "--api-key-env", "K",
                      env={"K": KEY})).exit_code == 0
    assert (await cli("agents", "add", "bot", "--provider", "on-disk", "--model", gguf.stem)).exit_code == 0
    result = await cli("models", "--timeout", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    env_row = next(line for line in lines if line.startswith("environment"))
    assert gguf.stem in env_row  # no OPENAI_* set: the local model
    disk_row = next(line for line in lines if line.startswith("on-disk"))
    assert gguf.stem in disk_row and "bot" in disk_row
    down_row = next(line for line in lines if line.startswith("down"))
    assert "cannot list its models" in down_row
    assert KEY not in result.output


async def test_models_asks_an_openai_compatible_server(cli: Cli, llama_server: object) -> None:
    base = llama_server.base_url  # type: ignore[attr-defined]
    result = await cli("models", env={"OPENAI_BASE_URL": base})
    assert result.exit_code == 0, result.output
    env_row = next(line for line in result.stdout.splitlines() if line.startswith("environment"))
    assert "cannot list" not in env_row and env_row.split()[-2] != "none"
