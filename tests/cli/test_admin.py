"""``mofa providers …``, ``mofa agents …`` and ``mofa db …``."""

from __future__ import annotations

from pathlib import Path

from mofa_sdk.persistence import connect_store
from tests.support.cli import Cli, one_error_line
from tests.support.fault_server import FaultServer

KEY = "sk-test-0123456789abcdefWXYZ"


async def test_provider_key_from_env_is_stored_and_masked(cli: Cli) -> None:
    result = await cli(
        "providers",
        "add",
        "openai-main",
        "--type",
        "openai",
        "--api-base",
        "https://api.example.com/v1",
        "--api-key-env",
        "MY_PROVIDER_KEY",
        env={"MY_PROVIDER_KEY": KEY},
    )
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and "sk-…WXYZ" in result.stdout
    listed = await cli("providers", "list")
    assert listed.exit_code == 0, listed.output
    assert KEY not in listed.output and "WXYZ" in listed.stdout and "openai-main" in listed.stdout
    store = await cli.store()
    try:
        row = await store.get_provider_by_name(cli.tenant, "openai-main")
        assert row is not None and row.api_key is not None
        assert row.api_key.get_secret_value() == KEY
        assert row.provider_type == "openai" and row.enabled
    finally:
        await store.close()


async def test_provider_key_from_hidden_prompt(cli: Cli) -> None:
    result = await cli(
        "providers",
        "add",
        "prompted",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--prompt-key",
        input=KEY + "\n",
    )
    assert result.exit_code == 0, result.output
    assert KEY not in result.output  # the prompt does not echo it
    store = await cli.store()
    try:
        row = await store.get_provider_by_name(cli.tenant, "prompted")
        assert row is not None and row.api_key is not None and row.api_key.get_secret_value() == KEY
    finally:
        await store.close()


async def test_provider_mistakes(cli: Cli) -> None:
    assert (await cli("providers", "add", "dup", "--api-base", "http://127.0.0.1:9/v1")).exit_code == 0
    line = one_error_line(await cli("providers", "add", "dup", "--api-base", "http://127.0.0.1:9/v1"))
    assert "dup" in line
    line = one_error_line(await cli("providers", "add", "bad", "--type", "nonsense"))
    assert "nonsense" in line
    line = one_error_line(await cli("providers", "add", "bad", "--api-base", "ftp://x"))
    assert "--api-base" in line
    line = one_error_line(
        await cli(
            "providers", "add", "bad", "--api-key-env", "SURELY_NOT_SET_123", env={"SURELY_NOT_SET_123": None}
        )
    )
    assert "SURELY_NOT_SET_123" in line
    line = one_error_line(await cli("providers", "disable", "absent"))
    assert "absent" in line
    store = await cli.store()
    try:
        assert [p.provider_name for p in await store.list_providers(cli.tenant)] == ["dup"]
    finally:
        await store.close()


async def test_documented_spellings_and_enable_disable(cli: Cli, fault: FaultServer) -> None:
    t = str(cli.tenant)
    result = await cli(
        "providers", "add", "local-llm", "--type", "compatible", "--api-base", fault.base_url, "--tenant", t
    )
    assert result.exit_code == 0, result.output
    result = await cli(
        "agents",
        "add",
        "chat-assistant",
        "--provider",
        "local-llm",
        "--model",
        "smollm2",
        "--window",
        "4",
        "--system",
        "You are a helpful assistant.",
        "--tenant",
        t,
    )
    assert result.exit_code == 0, result.output
    store = await cli.store()
    try:
        config = await store.get_agent_by_code_and_tenant_with_provider(cli.tenant, "chat-assistant")
        assert config is not None
        assert config.agent.context_limit == 4 and config.agent.model_name == "smollm2"
        assert config.agent.system_prompt == "You are a helpful assistant."
        assert config.provider.api_base == fault.base_url

        listed = await cli("agents", "list", "--tenant", t)
        assert (
            "chat-assistant" in listed.stdout and "local-llm" in listed.stdout and "smollm2" in listed.stdout
        )
        shown = await cli("agents", "show", "chat-assistant")
        assert shown.exit_code == 0, shown.output
        assert "You are a helpful assistant." in shown.stdout and "4 rounds" in shown.stdout

        assert (await cli("agents", "disable", "chat-assistant")).exit_code == 0
        agent = await store.get_agent_by_code_and_tenant(cli.tenant, "chat-assistant")
        assert agent is not None and not agent.agent_status
        assert "disabled" in one_error_line(await cli("chat", "--agent", "chat-assistant", input="hi\n"))
        assert (await cli("agents", "enable", "chat-assistant")).exit_code == 0

        assert (await cli("providers", "disable", "local-llm")).exit_code == 0
        provider = await store.get_provider_by_name(cli.tenant, "local-llm")
        assert provider is not None and not provider.enabled
        assert "disabled" in one_error_line(await cli("chat", "--agent", "chat-assistant", input="hi\n"))
        assert (await cli("providers", "enable", "local-llm")).exit_code == 0

        chat = await cli("chat", "--agent", "chat-assistant", input="hello\n")
        assert chat.exit_code == 0, chat.output
        assert chat.stdout == "tok0 tok1 tok2 \n"
        assert fault.requests[-1].body["model"] == "smollm2"
        assert fault.requests[-1].body["messages"][0]["content"] == "You are a helpful assistant."
    finally:
        await store.close()


async def test_agent_mistakes(cli: Cli) -> None:
    line = one_error_line(await cli("agents", "add", "a", "--provider", "nope", "--model", "m"))
    assert "nope" in line
    assert (await cli("providers", "add", "p", "--api-base", "http://127.0.0.1:9/v1")).exit_code == 0
    assert (await cli("agents", "add", "a", "--provider", "p", "--model", "m")).exit_code == 0
    line = one_error_line(await cli("agents", "add", "a", "--provider", "p", "--model", "m"))
    assert "a" in line
    assert "ghost" in one_error_line(await cli("agents", "show", "ghost"))
    assert "ghost" in one_error_line(await cli("agents", "enable", "ghost"))
    store = await cli.store()
    try:
        assert [a.agent_code for a in await store.list_agents(cli.tenant)] == ["a"]
    finally:
        await store.close()


async def _status_then_migrate(cli: Cli, url: str) -> None:
    status = await cli("db", "status", "--db", url)
    if url.startswith("sqlite"):  # a reading command does not create the file
        assert "no such database" in one_error_line(status)
    else:
        assert status.exit_code == 0, status.output
        assert "0001_init" in status.stdout and "pending" in status.stdout
    migrated = await cli("db", "migrate", "--db", url)
    assert migrated.exit_code == 0, migrated.output
    assert "0001_init" in migrated.stdout
    status = await cli("db", "status", "--db", url)
    assert "pending" not in status.stdout and "0001_init" in status.stdout
    again = await cli("db", "migrate", "--db", url)
    assert again.exit_code == 0 and "up to date" in again.stdout
    init = await cli("db", "init", "--db", url)
    assert init.exit_code == 0 and "already up to date" in init.stdout
    store = await connect_store(url)
    try:
        assert [name for name, applied in await store.migration_status() if applied is None] == []
    finally:
        await store.close()


async def test_db_commands_on_sqlite(cli: Cli, tmp_path: Path) -> None:
    await _status_then_migrate(cli, f"sqlite:///{tmp_path / 'fresh' / 'new.db'}")


async def test_db_commands_on_postgres(cli: Cli, fresh_pg_url: str) -> None:
    await _status_then_migrate(cli, fresh_pg_url)


async def test_db_init_creates_an_sqlite_database(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'init.db'}"
    result = await cli("db", "init", "--db", url)
    assert result.exit_code == 0, result.output
    assert "applied 0001_init" in result.stdout
    assert (tmp_path / "init.db").exists()
