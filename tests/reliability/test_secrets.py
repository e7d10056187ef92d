"""Secrets: a provider key never shows in logs (any level, any library), errors, reprs or CLI output;
keys are encrypted at rest with MOFA_SECRET_KEY, and a wrong key is a clear error.
Every SQL statement in ``src/`` is parameterised (a scan of the source, besides ruff's S608)."""

from __future__ import annotations

import ast
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mofa_sdk.entities import QueryFilter
from mofa_sdk.errors import AuthenticationError
from mofa_sdk.llm import LLMAgentBuilder
from mofa_sdk.persistence import PersistencePlugin, connect_store
from tests.cli.helpers import Cli
from tests.llm.fault_server import FaultServer, Reply

KEY = "sk-live-9Qx7TOPSECRET42zz"
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'secrets.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def fault() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


def raw_key(db_url: str, tenant: uuid.UUID) -> str:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            row = conn.execute("SELECT api_key FROM entity_provider WHERE tenant_id = ?", (str(tenant),)).fetchone()
    else:
        with psycopg.connect(db_url) as pg:
            row = pg.execute("SELECT api_key FROM entity_provider WHERE tenant_id = %s", (tenant,)).fetchone()
    assert row is not None
    return str(row[0])


async def test_the_key_never_leaks(
    db_url: str, fault: FaultServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: mofa_sdk, openai, httpx2, httpcore, psycopg …
    for name in ("openai", "httpx2", "httpx", "httpcore", "psycopg", "psycopg.pool", "mofa_sdk"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    monkeypatch.setenv("MOFA_SECRET_KEY", "the right passphrase")
    cli = Cli(db_url, uuid.uuid4(), uuid.uuid4())
    env = {"MY_PROVIDER_KEY": KEY, "MOFA_SECRET_KEY": "the right passphrase"}
    outputs: list[str] = []

    async def run(*args: str, code: int = 0, **kw: Any) -> str:
        result = await cli(*args, env=env, **kw)
        text = result.stdout + result.stderr
        outputs.append(text)
        assert result.exit_code == code, text
        return text

    await run("db", "init")
    await run("providers", "add", "main", "--type", "compatible", "--api-base", fault.base_url,
              "--api-key-env", "MY_PROVIDER_KEY")
    await run("agents", "add", "chat", "--provider", "main", "--model", "fault-model")
    await run("providers", "list")
    await run("agents", "show", "chat")
    # a server that echoes the key back in its error, then one that answers
    fault.push(Reply(status=401, error_body={"error": {"message": f"Incorrect API key provided: {KEY}"}}),
               Reply(chunks=["hello"]))
    out = await run("chat", "--agent", "chat", input="first\nsecond\n", code=1)
    assert "hello" in out
    assert fault.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was really used

    # at rest: encrypted, never the key itself
    stored = raw_key(db_url, cli.tenant)
    assert stored.startswith("enc:") and KEY not in stored

    # the library's own objects
    store = await connect_store(db_url)
    try:
        config = await store.get_agent_by_code_and_tenant_with_provider(cli.tenant, "chat")
        assert config is not None and config.provider.api_key is not None
        assert config.provider.api_key.get_secret_value() == KEY
        builder = LLMAgentBuilder.from_agent_config(config)
        plugin = PersistencePlugin.from_store("p", store, cli.user, cli.tenant, config.agent.id)
        agent = await builder.with_persistence_plugin(plugin).build_async()
        fault.push(Reply(status=401, error_body={"error": {"message": f"bad key {KEY}"}}))
        with pytest.raises(AuthenticationError) as err:
            await agent.chat("hi")
        calls = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant))
        texts = [repr(config), str(config), repr(config.provider), repr(builder), repr(agent), repr(agent.provider),
                 repr(plugin), repr(store), str(err.value), repr(err.value), *(c.model_dump_json() for c in calls)]
        await agent.aclose()
    finally:
        await store.close()

    # a wrong secret: a clear error, still no key
    wrong = await cli("providers", "list", env={**env, "MOFA_SECRET_KEY": "a wrong passphrase"})
    assert wrong.exit_code != 0 and "MOFA_SECRET_KEY" in wrong.stderr and "wrong key" in wrong.stderr
    outputs.append(wrong.stdout + wrong.stderr)

    logged = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}"
                       for r in caplog.records)
    assert any(r.name.startswith(("openai", "httpx2", "httpcore")) for r in caplog.records)  # they did log
    for where, text in (("logs", logged), ("cli output", "\n".join(outputs)), ("reprs and errors", "\n".join(texts))):
        assert KEY not in text, f"the key leaked into {where}"
        assert KEY[8:] not in text, f"part of the key leaked into {where}"


# -- SQL is parameterised -----------------------------------------------------------------------------
#: what an f-string statement may interpolate: module constants (column lists, table names), the "?"
#: marks made from them, and the savepoint name the SQLite store numbers itself. Never a value.
_CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*|_marks\(_?[A-Z][A-Z0-9_]*\)")
_ALLOWED_LOCALS = {("_savepoint", "name")}


def _sql_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls of execute/executemany/executescript whose statement is built from anything but constants:
    an f-string with a non-constant part, ``%`` or ``+`` on strings, or ``str.format``."""
    found = []
    functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)]
    owner = {id(n): f.name for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ("execute", "executemany", "executescript") or not node.args:
            continue
        stmt = node.args[0]
        if isinstance(stmt, ast.JoinedStr):
            parts = [ast.unparse(v.value) for v in stmt.values if isinstance(v, ast.FormattedValue)]
            if any(not _CONSTANT.fullmatch(p) and (owner.get(id(node)), p) not in _ALLOWED_LOCALS for p in parts):
                found.append((node.lineno, "f-string"))
        elif isinstance(stmt, ast.BinOp) and isinstance(stmt.op, ast.Mod | ast.Add):
            found.append((node.lineno, "% or + on a string"))
        elif (isinstance(stmt, ast.Call) and isinstance(stmt.func, ast.Attribute) and stmt.func.attr == "format"
              and isinstance(stmt.func.value, ast.Constant)):
            found.append((node.lineno, "str.format"))
    return found


def test_no_sql_is_built_from_strings_at_the_call() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for line, how in _sql_calls(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(SRC)}:{line} ({how})")
    assert offenders == [], "SQL built by string formatting: " + ", ".join(offenders)


def test_the_scan_catches_what_it_looks_for() -> None:
    bad = (
        'cur.execute(f"SELECT * FROM t WHERE a = {x}")\n'
        'conn.execute("SELECT %s" % x)\n'
        'c.execute("x {}".format(y))\n'
        'def _savepoint():\n    c.execute(f"SAVEPOINT {user_text}")\n'
    )
    hows = [how for _, how in _sql_calls(ast.parse(bad))]
    assert hows == ["f-string", "% or + on a string", "str.format", "f-string"]
    ok = (
        'cur.execute("SELECT 1 WHERE a = %s", (x,))\n'
        'cur.execute(f"INSERT INTO t ({_COLS}) VALUES ({_marks(_COLS)})", v)'
    )
    assert _sql_calls(ast.parse(ok)) == []
