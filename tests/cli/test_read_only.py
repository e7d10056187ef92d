"""Commands that only read never create a database, never migrate, and need no MOFA_SECRET_KEY for keys
they show masked (issue 15 items 5 and 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import Cli, one_error_line

KEY = "sk-test-0123456789abcdefWXYZ"
READERS = [
    ("sessions", "list"),
    ("sessions", "show", "0193a0b4-0000-7000-8000-000000000001"),
    ("sessions", "export", "0193a0b4-0000-7000-8000-000000000001"),
    ("usage",),
    ("providers", "list"),
    ("agents", "list"),
    ("agents", "show", "x"),
    ("db", "status"),
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
async def test_a_reader_does_not_create_a_missing_sqlite_file(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = Cli("sqlite:///data/typo.db", *(__import__("uuid").uuid4() for _ in range(2)))
    line = one_error_line(await cli(*args))
    assert "no such database: data/typo.db" in line
    assert list(tmp_path.iterdir()) == []  # neither the folder nor the file


async def test_a_reader_does_not_migrate(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an existing file with no schema
    cli = Cli(f"sqlite:///{path}", *(__import__("uuid").uuid4() for _ in range(2)))
    line = one_error_line(await cli("sessions", "list"))
    assert "mofa db migrate" in line
    status = await cli("db", "status")
    assert status.exit_code == 0, status.output
    assert "pending" in status.stdout
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []


async def test_providers_list_and_agents_need_no_secret_key(cli: Cli) -> None:
    secret = {"MOFA_SECRET_KEY": "a passphrase", "K": KEY}
    added = await cli("providers", "add", "enc", "--api-base", "http://127.0.0.1:9/v1", "--api-key-env", "K",
                      env=secret)
    assert added.exit_code == 0, added.output
    agent = await cli("agents", "add", "bot", "--provider", "enc", "--model", "m", env=secret)
    assert agent.exit_code == 0, agent.output
    listed = await cli("providers", "list")  # MOFA_SECRET_KEY unset
    assert listed.exit_code == 0, listed.output
    assert "enc" in listed.stdout and "encrypted" in listed.stdout and KEY not in listed.output
    assert (await cli("agents", "list")).exit_code == 0
    shown = await cli("agents", "show", "bot")
    assert shown.exit_code == 0 and "encrypted" in shown.stdout
    line = one_error_line(await cli("agents", "add", "bot", "--provider", "enc", "--model", "m"))
    assert "already exists" in line and "MOFA_SECRET_KEY" not in line
    # an agent can be added to an encrypted provider without the key (only its id is needed)
    other = await cli("agents", "add", "bot2", "--provider", "enc", "--model", "m")
    assert other.exit_code == 0, other.output
    # building a request does need the key: still the clear error
    line = one_error_line(await cli("chat", "--agent", "bot", "hello"))
    assert "MOFA_SECRET_KEY" in line
