"""Secrets: a provider key never shows in logs (any level, any library), errors, reprs or CLI output;
keys are encrypted at rest with MOFA_SECRET_KEY, and a wrong key is a clear error.
Every SQL statement in ``src/`` is parameterised (a scan of the source, besides ruff's S608)."""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import logging
import re
import socket
import sqlite3
import traceback
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import psycopg
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from mofa_sdk.entities import Agent, AgentConfig, Provider, QueryFilter
from mofa_sdk.errors import AuthenticationError, ConfigError, MofaError, ProviderError, ProviderServerError
from mofa_sdk.llm import ChatMessage, ChatParams, LLMAgentBuilder, OpenAICompatibleProvider, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, Store, _secrets, connect_store
from mofa_sdk.persistence._secrets import decrypt_key, encrypt_key
from tests.support.cli import Cli, one_error_line
from tests.support.fault_server import FaultServer, Reply
from tests.support.pg_cluster import PgCluster
from tests.support.rows import build_agent

KEY = "sk-live-9Qx7TOPSECRET42zz"
SRC = Path(__file__).resolve().parents[2] / "src"


def raw_key(db_url: str, tenant: uuid.UUID) -> str:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            row = conn.execute("SELECT api_key FROM entity_provider WHERE tenant_id = ?", (str(tenant),)).fetchone()
    else:
        with psycopg.connect(db_url) as pg:
            row = pg.execute("SELECT api_key FROM entity_provider WHERE tenant_id = %s", (tenant,)).fetchone()
    assert row is not None
    return str(row[0])


def set_raw_key(db_url: str, tenant: uuid.UUID, value: str) -> None:
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE entity_provider SET api_key = ? WHERE tenant_id = ?", (value, str(tenant)))
    else:
        with psycopg.connect(db_url) as pg:
            pg.execute("UPDATE entity_provider SET api_key = %s WHERE tenant_id = %s", (value, tenant))


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
    out = await run("chat", "--agent", "chat", "--lines", input="first\nsecond\n", code=1)
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


# -- round 2: URLs, api_base credentials, exception chains, the key derivation ------------------------
PW = "pw-S3CRET/@:?x"  # every character that must be percent-encoded in user-info, and some that libpq keeps
QK = "qk-QUERYSECRET77"  # a secret query parameter (?key=, ?password=)


def forms(*secrets: str) -> set[str]:
    """A secret as written, percent-encoded and decoded: none of them may show."""
    return {f for s in secrets for f in (s, quote(s, safe=""), quote_plus(s), unquote(s)) if f}


def assert_clean(text: str, *secrets: str, where: str = "output") -> None:
    for secret in forms(*secrets):
        assert secret not in text, f"{secret!r} leaked into {where}: {text}"


def chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception reachable from it through ``__cause__`` and ``__context__``."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not seen for seen in out):
            out.append(e)
            todo += [e.__cause__, e.__context__]
    return out


def assert_chain_clean(err: BaseException, *secrets: str) -> None:
    """No secret in the error, its repr, its traceback, or anything its chain holds; no SDK exception in
    the chain at all (their ``.request`` and ``.response`` carry the URL and headers)."""
    for e in chain(err):
        assert not type(e).__module__.startswith(("openai", "httpx", "httpcore", "psycopg")), repr(e)
        assert_clean(f"{e!s} {e!r} {vars(e)!r}", *secrets, where=f"{type(e).__name__} in the chain")
    assert_clean("".join(traceback.format_exception(err)), *secrets, where="the traceback")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db/x?sslmode=require&password=hunter3",
         "postgresql://app:***@db/x?sslmode=require&password=***"),
        ("postgres://app@db/x?PassWord=hunter3&application_name=a", "postgres://app@db/x?PassWord=***&application_name=a"),
        ("postgresql://u:p%40ss%2Fw@h:notaport/db", "postgresql://u:***@h:notaport/db"),
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),  # a raw "/" in the password
        ("postgresql://u:pa?ss#x@h/db", "postgresql://u:***@h/db"),  # raw "?" and "#": libpq keeps them
        ("postgresql://app:hunter2@[::1/mofa", "postgresql://app:***@[::1/mofa"),  # no parser accepts it
        ("app:hunter2@db/mofa", "app:***@db/mofa"),  # no scheme at all
        ("sqlite:////data/m.db?key=hunter3", "sqlite:////data/m.db?key=***"),
        ("http://u:hunter2@127.0.0.1:8080/v1?api_key=hunter3&x=1", "http://u:***@127.0.0.1:8080/v1?api_key=***&x=1"),
        ("https://h/v1?Sig=a&X-Amz-Signature=b&access_token=c&apikey=d&pass%77ord=e&token&q=",
         "https://h/v1?Sig=***&X-Amz-Signature=***&access_token=***&apikey=***&pass%77ord=***&token&q="),
        ("https://h/cb#access_token=hunter3&state=s", "https://h/cb#access_token=***&state=s"),
        ("https://ghp_hunter2@github.com/o/r", "https://***@github.com/o/r"),  # a lone user is a token on http
        ("postgresql://app@db:5432/x", "postgresql://app@db:5432/x"),  # nothing to hide, nothing changed
        ("http://host:8080/users/@me?q=1", "http://host:8080/users/@me?q=1"),
        ("[", "["),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from mofa_sdk._redact import redact_url

    assert redact_url(url) == shown
    assert "hunter" not in redact_url(url)


@settings(max_examples=200, deadline=None)
@given(inner=st.text(max_size=16), garbage=st.text(max_size=12).filter(lambda g: "ZQX" not in g and "QXZ" not in g),
       port=st.sampled_from(["5432", "notaport", "", "99999", "[", "]:x"]))
@example(inner="]/", garbage="", port="5432")  # "u:ZQX]/QXZ@h": a "]" once passed for an IPv6 host
def test_redact_url_never_echoes_a_password(inner: str, garbage: str, port: str) -> None:
    """Any password (between two markers, so that a leak of its head or its tail shows), any garbage."""
    from mofa_sdk._redact import redact_text, redact_url, url_secrets

    secret = f"ZQX{inner}QXZ"
    encoded = quote(secret, safe="")
    for url in (
        f"postgresql://u:{encoded}@h{garbage.replace('/', '')}:{port}/db",
        f"postgresql://u@h:{port}/db?{garbage.replace('&', '')}&password={encoded}",
        f"http://u:{encoded}@h:{port}/v1?key={encoded}#{garbage}",
        f"postgresql://u:{secret}@h:{port}/db",  # not even encoded
    ):
        # the URL alone, and in a message that also echoes the password as a library might
        for shown in (redact_url(url), redact_text(f"failed: {url} ({secret})", url_secrets(url))):
            assert "ZQX" not in shown and "QXZ" not in shown, shown


def test_redact_text_finds_urls_in_prose_and_known_secrets() -> None:
    from mofa_sdk._redact import redact_text

    text = "error at http://u:hunter2@h/v1?key=hunter3: bad key sk-hunter4 (see https://h/x?token=hunter5)."
    assert redact_text(text, ["sk-hunter4"]) == (
        "error at http://u:***@h/v1?key=***: bad key *** (see https://h/x?token=***)."
    )


# -- mofa db … --db 'postgresql://…?password=X' ---------------------------------------------------------
async def test_db_commands_never_print_the_password(pw_cluster: PgCluster, tmp_path: Path) -> None:
    """A cluster that really checks passwords: the password in ?password=, in percent-encoded user-info,
    wrong, or with a bad port, never shows in any db command's output."""
    cli = Cli("sqlite:///unused.db", uuid.uuid4(), uuid.uuid4())
    right = pw_cluster.password
    assert right is not None
    base = f"postgresql://postgres@127.0.0.1:{pw_cluster.port}/postgres"
    good = [f"{base}?sslmode=disable&password={right}",
            f"postgresql://postgres:{quote(right, safe='')}@127.0.0.1:{pw_cluster.port}/postgres?sslpassword={QK}"]
    for url in good:
        for args in (["db", "init"], ["db", "migrate"], ["db", "status"], ["db", "enable-rls"]):
            result = await cli(*args, "--db", url)
            text = result.stdout + result.stderr
            assert result.exit_code == 0, text
            assert f"127.0.0.1:{pw_cluster.port}" in text  # it does say where
            assert_clean(text, right, QK, where=f"`mofa {' '.join(args)}`")
    wrong = "WRONG-pw-hunter9"
    bad = [f"{base}?password={wrong}",  # refused by the server
           f"postgresql://postgres:{quote(PW, safe='')}@127.0.0.1:notaport/postgres",  # bad port, encoded pw
           f"postgresql://postgres:{quote(PW, safe='')}@[::1/postgres?password={wrong}",  # unparsable
           f"postgresql://postgres:{PW}@127.0.0.1:{pw_cluster.port}/postgres",  # raw "/", "@", "?" in it
           f"{base}?password={wrong}&key={QK}"]  # a parameter libpq refuses
    for url in bad:
        for args in (["db", "init"], ["db", "migrate"], ["db", "status"], ["db", "enable-rls"]):
            line = one_error_line(await cli(*args, "--db", url))
            assert_clean(line, wrong, PW, QK, where=f"`mofa {' '.join(args)}` for {url}")
    for url in bad:  # and the library's own error, chain included
        with pytest.raises(MofaError) as err:
            await connect_store(url)
        assert_chain_clean(err.value, wrong, PW, QK)
    db = tmp_path / "local.db"
    for args in (["db", "init"], ["db", "status"], ["db", "enable-rls"]):
        result = await cli(*args, "--db", f"sqlite:///{db}?key={QK}")
        assert "local.db" in result.stdout + result.stderr
        assert_clean(result.stdout + result.stderr, QK, where=f"`mofa {' '.join(args)}` on SQLite")


# -- api_base credentials -----------------------------------------------------------------------------
def creds_base(srv: FaultServer) -> str:
    return f"http://mofa:{quote(PW, safe='')}@127.0.0.1:{srv.port}/v1?key={QK}"


async def test_api_base_credentials_never_show_in_the_cli(db_url: str, fault: FaultServer) -> None:
    cli = Cli(db_url, uuid.uuid4(), uuid.uuid4())
    env = {"MY_PROVIDER_KEY": KEY}
    outputs: list[str] = []

    async def run(*args: str, code: int = 0, **kw: Any) -> str:
        result = await cli(*args, env=env, **kw)
        text = result.stdout + result.stderr
        outputs.append(f"`mofa {args[0]} {args[1]}`: {text}")  # the arguments hold the secrets
        assert result.exit_code == code, text
        return text

    await run("db", "init")
    out = await run("providers", "add", "main", "--api-base", creds_base(fault), "--api-key-env", "MY_PROVIDER_KEY")
    assert f"127.0.0.1:{fault.port}" in out
    assert f"127.0.0.1:{fault.port}" in await run("providers", "list")
    await run("providers", "add", "ftp", "--api-base", f"ftp://u:{PW}@h/?token={QK}", code=1)
    await run("agents", "add", "chat", "--provider", "main", "--model", "fault-model")
    assert f"127.0.0.1:{fault.port}" in await run("agents", "show", "chat")
    # a server that echoes the URL it was called on, and the key, in its error
    echo = f"bad credentials for {creds_base(fault)} and {PW} {QK} {KEY}"
    fault.push(Reply(status=401, error_body={"error": {"message": echo}}),
               Reply(status=500, error_body={"error": {"message": echo}}))
    out = await run("chat", "--agent", "chat", "--lines", input="first\nsecond\n", code=1)
    assert "authentication failed (401)" in out and "server error (500)" in out
    store = await connect_store(db_url)
    try:
        stored = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant))
        assert len(stored) == 2 and all(c.error_message for c in stored)
        provider = await store.get_provider_by_name(cli.tenant, "main")
        assert provider is not None and provider.api_base == creds_base(fault)  # stored as given: it is used
    finally:
        await store.close()
    assert_clean("\n".join(outputs), PW, QK, KEY, where="cli output")
    assert_clean("\n".join(str(c.error_message) for c in stored), PW, QK, KEY, where="entity_api_call")


async def test_api_base_credentials_never_show_in_reprs() -> None:
    base = f"http://mofa:{quote(PW, safe='')}@127.0.0.1:9/v1?api_key={QK}"
    row = Provider(tenant_id=uuid.uuid4(), provider_name="p", provider_type="compatible", api_base=base,
                   api_key=SecretStr(KEY))
    agent_row = Agent(tenant_id=row.tenant_id, agent_code="c", agent_name="c", model_name="m", provider_id=row.id)
    config = AgentConfig(agent=agent_row, provider=row)
    builder = LLMAgentBuilder.from_agent_config(config)
    agent = await builder.build_async()
    try:
        texts = [repr(row), str(row), repr(config), str(config), repr(builder), repr(agent), repr(agent.provider),
                 str(getattr(agent.provider, "base_url", ""))]
        assert "127.0.0.1:9" in repr(row) and "127.0.0.1:9" in repr(agent.provider)
        assert_clean("\n".join(texts), PW, QK, KEY, where="reprs")
    finally:
        await agent.aclose()
    local = Provider(tenant_id=row.tenant_id, provider_name="l", provider_type="local", api_base="/m/a@b.gguf")
    assert "/m/a@b.gguf" in repr(local)  # a model path is no URL: shown as given


# -- provider errors: messages, chains, stored rows -----------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ECHO = f"you called {{url}} with key {KEY}; password {PW}, ?key={QK}"

FAULTS: dict[str, Reply | None] = {
    "401": Reply(status=401, error_body={"error": {"message": ECHO}}),
    "403 non-json": Reply(status=403, error_body={"detail": ECHO}),
    "429": Reply(status=429, error_body={"error": {"message": ECHO}}),
    "500": Reply(status=500, error_body={"error": {"message": ECHO}}),
    "400": Reply(status=400, error_body={"error": {"message": ECHO}}),
    "malformed chunk": Reply(chunks=["a", "b", "c"], malformed_at=1, malformed_data=ECHO),
    "cut mid-stream": Reply(chunks=["a", "b", "c"], cut_after=1),
    "read timeout": Reply(first_byte_delay=3),
    "refused": None,  # nothing listens on the port
}


@pytest.mark.parametrize("fault_name", list(FAULTS))
async def test_provider_errors_are_scrubbed(fault: FaultServer, fault_name: str) -> None:
    reply = FAULTS[fault_name]
    port = fault.port if reply is not None else _closed_port()
    base = f"http://mofa:{quote(PW, safe='')}@127.0.0.1:{port}/v1?key={QK}"
    if reply is not None:
        fault.push(replace(reply, error_body=_fill(reply.error_body, base),
                           malformed_data=reply.malformed_data.replace("{url}", base)))
    provider = OpenAICompatibleProvider(base_url=base, api_key=KEY, max_retries=0, read_timeout=1)
    try:
        with pytest.raises(ProviderError) as err:
            async for _ in provider.stream([ChatMessage("user", "hi")], ChatParams(model="m")):
                pass
    finally:
        await provider.aclose()
    # never where the upstream lives (issue 23: its address is internal to the deployment), only what it is
    assert "127.0.0.1" not in str(err.value) and "openai-compatible provider" in str(err.value)
    assert_chain_clean(err.value, PW, QK, KEY)
    if fault_name[0].isdigit():
        assert err.value.status_code == int(fault_name[:3])
        cause = err.value.__cause__
        assert cause is not None and "openai." in str(cause)  # the SDK error's class is still named


def _fill(body: dict[str, Any] | None, base: str) -> dict[str, Any] | None:
    if body is None:
        return None
    filled: dict[str, Any] = json.loads(json.dumps(body).replace("{url}", base))
    return filled


async def test_api_base_credentials_never_show_in_logs(fault: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpx", "httpcore", "httpcore2", "mofa_sdk"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    fault.push(Reply(status=401, error_body={"error": {"message": "no"}}), Reply(chunks=["hello"]))
    provider = OpenAICompatibleProvider(base_url=creds_base(fault), api_key=KEY, max_retries=0)
    try:
        for _ in range(2):
            with contextlib.suppress(ProviderError):
                async for _ in provider.stream([ChatMessage("user", "hi")], ChatParams(model="m")):
                    pass
    finally:
        await provider.aclose()
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    # it did log the request, by path: the upstream's host is hidden too
    assert "HTTP Request: POST http://***/v1" in logged and "127.0.0.1" not in logged
    assert_clean(logged, PW, QK, KEY, where="logs")


async def test_a_bad_base_url_is_a_clean_config_error() -> None:
    for base in (f"http://mofa:{quote(PW, safe='')}@127.0.0.1:notaport/v1?key={QK}", f"http://mofa:{PW}@[::1/v1"):
        with pytest.raises(MofaError) as err:
            OpenAICompatibleProvider(base_url=base, api_key=KEY)
        assert_chain_clean(err.value, PW, QK, KEY)


class _Unredacted(ScriptedProvider):
    """A third-party provider that puts its URL, credentials and all, in its errors."""


async def test_error_message_is_stored_redacted_on_every_store(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, fault: FaultServer
) -> None:
    base = creds_base(fault)
    fault.push(Reply(status=401, error_body={"error": {"message": f"unknown caller at {base}"}}))
    providers = [
        OpenAICompatibleProvider(base_url=base, api_key=KEY, max_retries=0),
        _Unredacted(fail=ProviderServerError(f"upstream {base} failed")),
    ]
    for provider in providers:
        agent, _ = await build_agent(store, tenant, user, provider)
        with pytest.raises(ProviderError):
            await agent.chat("hi")
        await agent.aclose()
    stored = await store.query_api_calls(QueryFilter(tenant_id=tenant))
    # the openai-compatible provider never names its upstream; a third-party one's host stays (redacted)
    assert len(stored) == 2 and sorted("127.0.0.1" in str(c.error_message) for c in stored) == [False, True]
    assert_clean("\n".join(c.model_dump_json() for c in stored), PW, QK, KEY, where=f"{store.dialect} api calls")


# -- MOFA_SECRET_KEY: salted scrypt, old values still read, one derivation per salt ----------------------
def _v1(plain: str, passphrase: str) -> str:
    """A value as the old code wrote it: ``enc:v1:`` + Fernet under the passphrase (or its SHA-256)."""
    try:
        fernet = Fernet(passphrase.encode())
    except ValueError:
        fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(passphrase.encode()).digest()))
    return "enc:v1:" + fernet.encrypt(plain.encode()).decode()


def _new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the next write came from another process: a fresh salt, nothing cached."""
    monkeypatch.setattr(_secrets, "_process_salt", None)
    _secrets._derived.cache_clear()


def test_new_values_are_salted_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    first = encrypt_key(KEY, "a weak passphrase")
    _new_process(monkeypatch)
    second = encrypt_key(KEY, "a weak passphrase")
    assert first is not None and second is not None
    salts = []
    for value in (first, second):
        version, salt_text, token = value.split(":", 3)[1:]
        assert value.startswith("enc:v2:") and version == "v2" and KEY not in value
        salt = base64.urlsafe_b64decode(salt_text)
        salts.append(salt)
        # the documented derivation, from the stored salt alone
        kdf = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1)
        fernet = Fernet(base64.urlsafe_b64encode(kdf.derive(b"a weak passphrase")))
        assert fernet.decrypt(token.encode()).decode() == KEY
        assert decrypt_key(value, "a weak passphrase") == KEY
    assert len(set(salts)) == 2 and all(len(s) == 16 for s in salts)
    with pytest.raises(ConfigError, match="wrong key"):
        decrypt_key(first, "another passphrase")
    with pytest.raises(ConfigError, match="damaged"):
        decrypt_key("enc:v2:not-base64!:" + first.rsplit(":", 1)[1], "a weak passphrase")


def test_old_format_values_still_decrypt() -> None:
    fernet_key = Fernet.generate_key().decode()
    for passphrase in ("the right passphrase", fernet_key):
        old = _v1(KEY, passphrase)
        assert decrypt_key(old, passphrase) == KEY
        with pytest.raises(ConfigError, match="wrong key"):
            decrypt_key(old, "a wrong passphrase")


async def test_old_rows_still_read_and_are_rewritten_as_v2(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOFA_SECRET_KEY", "the right passphrase")
    cli = Cli(db_url, uuid.uuid4(), uuid.uuid4())
    env = {"MOFA_SECRET_KEY": "the right passphrase", "MY_PROVIDER_KEY": KEY}
    assert (await cli("db", "init", env=env)).exit_code == 0
    assert (await cli("providers", "add", "old", "--api-key-env", "MY_PROVIDER_KEY", env=env)).exit_code == 0
    set_raw_key(db_url, cli.tenant, _v1(KEY, "the right passphrase"))
    listed = await cli("providers", "list", env=env)
    assert listed.exit_code == 0 and KEY[-4:] in listed.stdout, listed.output
    store = await connect_store(db_url)
    try:
        row = await store.get_provider_by_name(cli.tenant, "old")
        assert row is not None and row.api_key is not None and row.api_key.get_secret_value() == KEY
    finally:
        await store.close()
    assert (await cli("providers", "disable", "old", env=env)).exit_code == 0  # a write re-encrypts it
    assert raw_key(db_url, cli.tenant).startswith("enc:v2:")


async def test_one_derivation_per_salt_not_per_row(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = Cli(db_url, uuid.uuid4(), uuid.uuid4())
    env = {"MOFA_SECRET_KEY": "the right passphrase", "MY_PROVIDER_KEY": KEY}
    assert (await cli("db", "init", env=env)).exit_code == 0
    for process in range(2):  # two `mofa` processes, three providers each
        _new_process(monkeypatch)
        for i in range(3):
            added = await cli("providers", "add", f"p{process}{i}", "--api-key-env", "MY_PROVIDER_KEY", env=env)
            assert added.exit_code == 0, added.output
        assert _secrets._derived.cache_info().misses == 1  # one process, one salt, one derivation
    _new_process(monkeypatch)
    listed = await cli("providers", "list", env=env)
    assert listed.exit_code == 0 and listed.stdout.count(KEY[-4:]) == 6, listed.output
    assert _secrets._derived.cache_info().misses == 2  # six rows, two salts
