"""Every user mistake is one clear line on stderr and a non-zero exit, without a traceback (with
``--verbose``, the traceback)."""

from __future__ import annotations

import sys
import uuid

import pytest

from tests.support.cli import Cli, one_error_line
from tests.support.fault_server import FaultServer


async def test_unreachable_database(cli: Cli) -> None:
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/nowhere"
    for args in (["sessions", "list"], ["chat"], ["db", "status"], ["usage"]):
        result = await cli(*args, "--db", url, input="hi\n")
        line = one_error_line(result)
        assert "s3cret-pw" not in result.output
        assert "127.0.0.1" in line, line


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "not a url at all", "sqlite:"])
async def test_bad_database_url(cli: Cli, url: str) -> None:
    line = one_error_line(await cli("sessions", "list", "--db", url))
    assert "URL" in line or "url" in line


async def test_unknown_session(cli: Cli, fault: FaultServer) -> None:
    assert (await cli("db", "init")).exit_code == 0
    ghost = str(uuid.uuid4())
    for args in (
        ["sessions", "show", ghost],
        ["sessions", "export", ghost],
        ["sessions", "delete", ghost, "-y"],
        ["chat", "--session", ghost, "--base-url", fault.base_url],
    ):
        line = one_error_line(await cli(*args, input="hi\n"))
        assert f"unknown session {ghost}" in line
    assert fault.requests == []  # nothing was sent for a session that does not exist
    store = await cli.store()
    try:
        assert await store.get_session(cli.tenant, uuid.UUID(ghost)) is None  # and nothing was created
    finally:
        await store.close()


async def test_no_provider_configured(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # as if the `local` extra were not installed (find_spec returns None for a None entry)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    result = await cli("chat", input="hi\n")
    line = one_error_line(result)
    assert "OPENAI_API_KEY" in line and "mofa-sdk[local]" in line
    store = await cli.store()
    try:
        assert await store.get_user_sessions(cli.tenant, cli.user) == []  # no session row was written
    finally:
        await store.close()


@pytest.mark.parametrize(
    "args",
    [
        ["sessions", "list", "--tenant", "not-a-uuid"],
        ["sessions", "list", "--user", "12345"],
        ["sessions", "show", "nope"],
        ["chat", "--session", "nope"],
        ["usage", "--session", "nope"],
    ],
)
async def test_invalid_uuid(cli: Cli, args: list[str]) -> None:
    assert (await cli("db", "init")).exit_code == 0
    line = one_error_line(await cli(*args, input="hi\n"))
    assert ("must be a UUID" in line and "nope" in line) or "not-a-uuid" in line or "12345" in line \
        or "'nope' is not a session id" in line


async def test_invalid_uuid_in_environment(cli: Cli) -> None:
    line = one_error_line(await cli("sessions", "list", env={"TENANT_ID": "tenant-one"}))
    assert "TENANT_ID" in line and "tenant-one" in line


async def test_verbose_shows_the_traceback(cli: Cli) -> None:
    assert (await cli("db", "init")).exit_code == 0
    result = await cli("--verbose", "sessions", "show", "nope")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


async def test_bad_option_values(cli: Cli) -> None:
    assert "--since" in one_error_line(await cli("usage", "--since", "yesterday-ish"))
    assert "--by" in one_error_line(await cli("usage", "--by", "colour"))
    # typer's own usage errors exit 2 with its usage message
    result = await cli("chat", "--window", "-1")
    assert result.exit_code == 2 and "Traceback" not in result.output
