"""Every ```python block of README.md runs as shown, in README order: against a fresh PostgreSQL schema, a
model server (the loopback fault server, through ``OPENAI_BASE_URL``) and, for the OpenAI client block, a
real ``mofa serve``. The shell steps a block relies on (an agent row, a service key) are done with the CLI
first, on the same database, as the README says."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mofa_sdk.cli import app
from mofa_sdk.llm import LLMAgent
from mofa_sdk.persistence import Store
from mofa_sdk.sync import Blocking
from tests.support.fault_server import FaultServer, Reply, ScriptedCall
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _run_block(source: str, index: int) -> dict[str, Any]:
    """One block in a fresh namespace (top-level ``await`` allowed, as in a notebook or ``python -m asyncio``);
    the agents, stores and clients it made are closed afterwards."""
    code = compile(source, f"README.md python block {index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    ns: dict[str, Any] = {"__name__": f"readme_block_{index}"}
    if code.co_flags & inspect.CO_COROUTINE:

        async def main() -> None:
            await eval(code, ns)
            for value in list(ns.values()):
                if isinstance(value, LLMAgent):
                    await value.aclose()
                elif isinstance(value, Store):
                    await value.close()

        asyncio.run(main())
    else:
        exec(code, ns)
        for value in list(ns.values()):
            if (isinstance(value, Blocking) and hasattr(value, "close")) or type(value).__name__ == "OpenAI":
                value.close()
    return ns


def _mofa(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def test_the_readme_has_the_blocks_this_test_knows() -> None:
    blocks = python_blocks()
    assert len(blocks) == 7, [b.splitlines()[0] for b in blocks]


@pytest.mark.postgres
@pytest.mark.slow
async def test_every_python_block_of_the_readme_runs(
    fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks()
    tenant = uuid.uuid4()
    monkeypatch.chdir(tmp_path)
    async with FaultServer(Reply(chunks=["Hello", " from", " the", " model."])) as fault:
        env = {"DATABASE_URL": fresh_pg_url, "OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-readme",
               "TENANT_ID": str(tenant), "XDG_DATA_HOME": str(tmp_path / "data"),
               "OPENAI_KEY_FOR_ACME": "sk-test-acme"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("OPENAI_MODEL", "USER_ID", "SESSION_ID", "AGENT_ID", "MOFA_SECRET_KEY", "MOFA_CONFIG"):
            monkeypatch.delenv(name, raising=False)

        # 1. automatic persistence: the reply streams, and is saved
        ns = await asyncio.to_thread(_run_block, blocks[0], 1)
        assert "Hello from the model." in capsys.readouterr().out
        assert str(ns["agent"].session_id) == "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4"

        # 2. manual persistence: the reply and its call record, linked
        ns = await asyncio.to_thread(_run_block, blocks[1], 2)
        assert ns["full"] == "Hello from the model."
        store = await _store(fresh_pg_url)
        try:
            reply = await store.get_message(ns["tenant_id"], ns["assistant_msg_id"])
            assert reply is not None and reply.content == "Hello from the model."
            call = await store.get_api_call_for_message(ns["tenant_id"], ns["assistant_msg_id"])
            assert call is not None and call.status == "success" and call.request_message_id == ns["user_msg_id"]
        finally:
            await store.close()

        # 3. the database-driven agent: `mofa providers add` / `mofa agents add` first, as the README shows
        await asyncio.to_thread(_mofa, "providers", "add", "acme-openai", "--type", "openai",
                                "--api-base", fault.base_url, "--api-key-env", "OPENAI_KEY_FOR_ACME")
        await asyncio.to_thread(_mofa, "agents", "add", "chat-assistant", "--provider", "acme-openai",
                                "--model", "gpt-4o-mini", "--window", "4", "--system", "You are helpful.")
        await asyncio.to_thread(_run_block, blocks[2], 3)
        assert "Hello from the model." in capsys.readouterr().out
        assert fault.requests[-1].body["messages"][0] == {"role": "system", "content": "You are helpful."}

        # 4. a tool: the model calls it, the agent runs it and answers with its result
        fault.push(Reply(chunks=[], tool_calls=[ScriptedCall("call_1", "get_weather", '{"city": "Paris"}')],
                         finish_reason="tool_calls"),
                   Reply(chunks=["It is sunny and 21 °C in Paris."]))
        await asyncio.to_thread(_run_block, blocks[3], 4)
        assert "It is sunny and 21 °C in Paris." in capsys.readouterr().out
        tool_message = fault.requests[-1].body["messages"][-1]
        assert tool_message["role"] == "tool" and tool_message["content"] == "sunny, 21 °C in Paris"
        assert (tmp_path / "chat.db").exists()

        # 5. without await
        await asyncio.to_thread(_run_block, blocks[4], 5)
        out = capsys.readouterr().out
        assert out.count("Hello from the model.") == 2, out

        # 6. an OpenAI client against `mofa serve` (the README's localhost:8000 is this test's port)
        key = (await asyncio.to_thread(_mofa, "keys", "create", "--tenant", str(tenant))).splitlines()[-1]
        async with _mofa_serve(tmp_path / "serve.log") as url:
            monkeypatch.setenv("KEY", key)
            source = blocks[5].replace("http://localhost:8000", url)
            ns = await asyncio.to_thread(_run_block, source, 6)
            assert ns["first"].output_text == "Hello from the model."
            assert ns["conv"].id.startswith("conv_")

            # 7. an Agents SDK agent with a tool, pointed at `mofa serve`: the rows the README shows
            capsys.readouterr()
            fault.push(Reply(chunks=[], tool_calls=[ScriptedCall("call_7", "get_weather", '{"city": "Lima"}')],
                             finish_reason="tool_calls"),
                       Reply(chunks=["It is sunny in Lima."]))
            await asyncio.to_thread(_run_block, blocks[6].replace("http://localhost:8000", url), 7)
        printed = capsys.readouterr().out.split()
        assert " ".join(printed[:-1]).endswith("It is sunny in Lima."), printed
        store = await _store(fresh_pg_url)
        try:
            rows = await store.get_session_messages(tenant, uuid.UUID(printed[-1]))
        finally:
            await store.close()
        assert [(r.role, r.content, r.tool_call_id) for r in rows] == [
            ("system", "Use the tools.", None), ("user", "Weather in Lima?", None), ("assistant", "", None),
            ("tool", "sunny in Lima", "call_7"), ("assistant", "It is sunny in Lima.", None)]
        assert rows[2].tool_calls[0].name == "get_weather"


@asynccontextmanager
async def _mofa_serve(log: Path) -> AsyncIterator[str]:
    """``mofa serve`` on a free port with this process's environment; its base URL once /healthz answers."""
    import httpx2

    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mofa_sdk.cli", "serve", "--port", str(port)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(timeout=2) as client:
            for _ in range(300):
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"mofa serve did not come up:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _store(url: str) -> Store:
    from mofa_sdk.persistence import connect_store

    return await connect_store(url)
