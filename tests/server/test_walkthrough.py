"""The traps of the new user's walk-through (issue 25), each fixed and kept fixed."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

from typer.testing import CliRunner, Result

from mofa_sdk.cli import app
from mofa_sdk.entities import Session
from mofa_sdk.errors import AgentUnavailableError
from mofa_sdk.ids import NIL_UUID
from mofa_sdk.persistence import connect_store
from tests.server.support import Launcher

ROOT = Path(__file__).resolve().parents[2]


def _mofa(args: list[str], env: dict[str, str | None], input: str | None = None) -> Result:
    return CliRunner().invoke(app, args, env=env, input=input)


def _home(tmp_path: Path) -> dict[str, str | None]:
    """An environment whose default SQLite file is under ``tmp_path`` (platformdirs follows XDG_DATA_HOME)."""
    return {"DATABASE_URL": None, "XDG_DATA_HOME": str(tmp_path / "data"), "TENANT_ID": None, "USER_ID": None,
            "MOFA_CONFIG": None, "COLUMNS": "200"}


def test_keys_create_on_the_default_sqlite_file_says_so(tmp_path: Path) -> None:
    env = _home(tmp_path)
    r = _mofa(["keys", "create", "--tenant", str(uuid.uuid4())], env)
    assert r.exit_code == 0, r.output
    assert re.search(r"database: sqlite:///.*data/mofa/.*\(the default SQLite file", r.stderr), r.stderr
    assert "warning: the key was written to the default SQLite file" in r.stderr
    assert r.stdout.splitlines()[-1].startswith("mofa_")  # the key is still alone on the last line of stdout
    # named explicitly: nothing to warn about
    db = f"sqlite:///{tmp_path / 'named.db'}"
    r = _mofa(["keys", "create", "--db", db, "--tenant", str(uuid.uuid4())], env)
    assert r.exit_code == 0 and "database:" not in r.stderr and "warning" not in r.stderr, r.stderr
    r = _mofa(["keys", "list", "--tenant", str(uuid.uuid4())], {**env, "DATABASE_URL": db})
    assert r.exit_code == 0 and "database:" not in r.stderr, r.stderr


async def test_sessions_delete_without_a_terminal_is_a_clear_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    env = {**_home(tmp_path), "DATABASE_URL": db}
    store = await connect_store(db)
    try:
        session = await store.create_session(Session(tenant_id=NIL_UUID, user_id=NIL_UUID, title="t"))
    finally:
        await store.close()
    sid = str(session.id)
    r = await asyncio.to_thread(_mofa, ["sessions", "delete", sid], env, "")  # stdin at its end: nobody to ask
    assert r.exit_code == 1
    assert "needs a confirmation" in r.stderr and "--yes" in r.stderr and "Aborted" not in r.output, r.output
    assert (await asyncio.to_thread(_mofa, ["sessions", "show", sid], env)).exit_code == 0  # still there
    assert (await asyncio.to_thread(_mofa, ["sessions", "delete", sid, "--yes"], env)).exit_code == 0


def test_agents_edit_reports_the_options_not_the_columns(tmp_path: Path) -> None:
    env = {**_home(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    r = _mofa(["providers", "add", "p", "--api-base", "http://127.0.0.1:9/v1"], env)
    assert r.exit_code == 0, r.output
    r = _mofa(["agents", "add", "helper", "--provider", "p", "--model", "m"], env)
    assert r.exit_code == 0, r.output
    r = _mofa(["agents", "edit", "helper", "--window", "3", "--max-tokens", "50"], env)
    assert r.exit_code == 0, r.output
    assert "updated agent helper: --max-tokens, --window" in r.stdout or \
        "updated agent helper: --window, --max-tokens" in r.stdout, r.stdout
    assert "context_limit" not in r.output and "max_completion_tokens" not in r.output


def test_docs_name_the_codes_the_service_answers_with() -> None:
    service = (ROOT / "docs" / "service.md").read_text()
    assert f"`{AgentUnavailableError.code}`" in service
    row = next(line for line in service.splitlines() if "disabled agent" in line.lower() and "409" in line)
    assert AgentUnavailableError.code in row, row


async def test_an_unparsable_request_gets_the_json_error_shape(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        server = await launcher.mofa_serve(f"sqlite:///{tmp_path / 's.db'}")
        for raw in (b"POST /v1/sessions HTTP/1.1\r\nhost: x\r\ncontent-length: 12abc\r\n\r\n{}",
                    b"GARBAGE\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400"), answer
            assert b"content-type: application/json" in head.lower(), head
            error = json.loads(body)["error"]
            assert error["code"] == "bad_request" and error["type"] == "invalid_request_error", error
            assert set(error) == {"code", "message", "type", "param"}
    finally:
        launcher.close()
