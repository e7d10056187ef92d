"""``mofa chat`` with piped input (CliRunner) against the fault server and the real llama.cpp server."""

from __future__ import annotations

import sys
import uuid

import pytest

from mofa_sdk.entities import Agent, Provider, QueryFilter
from tests.support.cli import Cli, messages_of, one_error_line, session_id_in
from tests.support.fault_server import FaultServer, Reply


async def test_piped_turns_are_printed_and_saved(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["Hello", " there"]), Reply(chunks=["Second", " reply"]))
    result = await cli("chat", "--base-url", fault.base_url, "--lines", input="hi\n\nhow are you?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there\nSecond reply\n"  # replies only, plainly
    sid = session_id_in(result.stderr)
    rows = await messages_of(cli, sid)
    assert [(m.role, m.content, m.status) for m in rows] == [
        ("user", "hi", "complete"),
        ("assistant", "Hello there", "complete"),
        ("user", "how are you?", "complete"),
        ("assistant", "Second reply", "complete"),
    ]
    # the second request carried the first round
    assert [m["content"] for m in fault.requests[1].body["messages"]] == ["hi", "Hello there", "how are you?"]
    store = await cli.store()
    try:
        session = await store.get_session(cli.tenant, uuid.UUID(sid))
        assert session is not None and session.title == "hi"  # made from the first user message
        assert session.user_id == cli.user
    finally:
        await store.close()


async def test_resume_with_session_sends_earlier_rounds(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["one"]), Reply(chunks=["two"]), Reply(chunks=["three"]))
    first = await cli("chat", "--base-url", fault.base_url, "--lines", input="a\nb\n")
    assert first.exit_code == 0, first.output
    sid = session_id_in(first.stderr)
    # `echo c | mofa chat --session ID`, in a later process
    again = await cli("chat", "--session", sid, "--base-url", fault.base_url, "--window", "1", input="c\n")
    assert again.exit_code == 0, again.output
    assert again.stdout == "three\n"
    assert session_id_in(again.stderr) == sid
    # window 1: only the last complete round before the new message
    assert [(m["role"], m["content"]) for m in fault.requests[2].body["messages"]] == [
        ("user", "b"),
        ("assistant", "two"),
        ("user", "c"),
    ]
    assert [m.content for m in await messages_of(cli, sid)] == ["a", "one", "b", "two", "c", "three"]


async def test_system_prompt_and_model_reach_the_request(cli: Cli, fault: FaultServer) -> None:
    result = await cli(
        "chat", "--base-url", fault.base_url, "--model", "my-model", "--system", "Be brief.", input="x\n"
    )
    assert result.exit_code == 0, result.output
    body = fault.requests[0].body
    assert body["model"] == "my-model"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_base_url_from_environment(cli: Cli, fault: FaultServer) -> None:
    result = await cli("chat", input="hello\n", env={"OPENAI_BASE_URL": fault.base_url})
    assert result.exit_code == 0, result.output
    assert result.stdout == "tok0 tok1 tok2 \n"
    assert len(fault.requests) == 1


async def test_provider_failure_is_reported_and_saved(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["partial ", "text ", "more"], cut_after=2), Reply(chunks=["fine"]))
    result = await cli("chat", "--base-url", fault.base_url, "--lines", input="one\ntwo\n")
    assert result.exit_code == 1  # a failed turn makes a script fail, after the other turns ran
    assert "Traceback" not in result.output
    assert "error from the model" in result.stderr
    assert result.stdout.endswith("fine\n")
    rows = await messages_of(cli, session_id_in(result.stderr))
    assert [(m.role, m.status) for m in rows] == [
        ("user", "complete"),
        ("assistant", "error"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert rows[1].content == "partial text "


async def test_slash_commands_in_piped_mode(cli: Cli, fault: FaultServer) -> None:
    result = await cli(
        "chat", "--base-url", fault.base_url, "--lines", input="hello\n/new\nagain\n/sessions\n/exit\nnever\n"
    )
    assert result.exit_code == 0, result.output
    first = session_id_in(result.stderr)
    second = session_id_in(result.stderr.split("new ", 1)[1])
    assert first != second
    assert len(fault.requests) == 2  # "never" came after /exit
    assert [m.content for m in await messages_of(cli, second)] == ["again", "tok0 tok1 tok2 "]
    assert fault.requests[1].body["messages"] == [{"role": "user", "content": "again"}]  # a fresh history
    listed = result.stderr.split("new session", 1)[1]  # the /sessions table comes after
    assert first[-8:] in listed  # by its short id


async def test_switch_and_window_commands(cli: Cli, fault: FaultServer) -> None:
    first = await cli("chat", "--base-url", fault.base_url, "--lines", input="r1\nr2\nr3\n")
    sid = session_id_in(first.stderr)
    fault.requests.clear()
    script = f"/switch {sid}\n/window 1\nr4\n/window all\nr5\n/switch not-a-uuid\n"
    result = await cli("chat", "--base-url", fault.base_url, "--lines", input=script)
    assert result.exit_code == 1  # the bad /switch is reported, and a script sees it failed
    assert "'not-a-uuid' is not a session id" in result.stderr
    users = [[m["content"] for m in r.body["messages"] if m["role"] == "user"] for r in fault.requests]
    assert users == [["r3", "r4"], ["r1", "r2", "r3", "r4", "r5"]]


async def test_agent_row_drives_the_chat(cli: Cli, fault: FaultServer) -> None:
    store = await cli.store()
    try:
        provider = await store.create_provider(
            Provider(
                tenant_id=cli.tenant,
                provider_name="fault",
                provider_type="compatible",
                api_base=fault.base_url,
            )
        )
        agent = await store.create_agent(
            Agent(
                tenant_id=cli.tenant,
                agent_code="helper",
                agent_name="Helper",
                model_name="row-model",
                provider_id=provider.id,
                system_prompt="From the row.",
                context_limit=1,
            )
        )
    finally:
        await store.close()
    result = await cli("chat", "--agent", "helper", "--lines", input="q1\nq2\nq3\n")
    assert result.exit_code == 0, result.output
    body = fault.requests[2].body
    assert body["model"] == "row-model"
    assert [m["content"] for m in body["messages"]] == ["From the row.", "q2", "tok0 tok1 tok2 ", "q3"]
    store = await cli.store()
    try:
        session = await store.get_session(cli.tenant, uuid.UUID(session_id_in(result.stderr)))
        assert session is not None and session.agent_id == agent.id
        calls = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant))
        assert len(calls) == 3 and {c.agent_id for c in calls} == {agent.id}
    finally:
        await store.close()


async def test_disabled_agent_is_one_clear_line(cli: Cli, fault: FaultServer) -> None:
    store = await cli.store()
    try:
        p = await store.create_provider(
            Provider(
                tenant_id=cli.tenant, provider_name="p", provider_type="compatible", api_base=fault.base_url
            )
        )
        await store.create_agent(
            Agent(
                tenant_id=cli.tenant,
                agent_code="off",
                agent_name="Off",
                model_name="m",
                provider_id=p.id,
                agent_status=False,
            )
        )
    finally:
        await store.close()
    line = one_error_line(await cli("chat", "--agent", "off", input="hi\n"))
    assert "disabled" in line
    line = one_error_line(await cli("chat", "--agent", "missing", input="hi\n"))
    assert "missing" in line
    assert fault.requests == []


@pytest.mark.llama_server
async def test_restart_resumes_with_the_real_server(cli: Cli, llama_server: object) -> None:
    """Chat, quit, `mofa chat --session ID`: the real server's request carries the earlier round."""
    base_url = llama_server.base_url  # type: ignore[attr-defined]
    llama_server.clear()  # type: ignore[attr-defined]
    first = await cli(
        "chat", "--base-url", base_url, "--system", "Answer in one short sentence.", input="My name is Ada.\n"
    )
    assert first.exit_code == 0, first.output
    sid = session_id_in(first.stderr)
    reply = first.stdout.strip()
    assert reply
    again = await cli(
        "chat",
        "--session",
        sid,
        "--base-url",
        base_url,
        "--system",
        "Answer in one short sentence.",
        input="What is my name?\n",
    )
    assert again.exit_code == 0, again.output
    body = llama_server.requests[-1]  # type: ignore[attr-defined]
    sent = [(m["role"], m["content"]) for m in body["messages"]]
    assert sent[0] == ("system", "Answer in one short sentence.")
    assert sent[1] == ("user", "My name is Ada.")
    assert sent[2][0] == "assistant" and sent[2][1].strip() == reply
    assert sent[3] == ("user", "What is my name?")
    rows = await messages_of(cli, sid)
    assert [m.role for m in rows] == ["user", "assistant", "user", "assistant"]


async def test_piped_chat_as_a_real_process(cli: Cli, fault: FaultServer) -> None:
    """`echo hello | mofa chat --session ID` in a shell prints the reply and exits 0."""
    import asyncio
    import os
    import shlex

    fault.push(Reply(chunks=["first"]), Reply(chunks=["Hi", " from", " a pipe"]))
    first = await cli("chat", "--base-url", fault.base_url, input="start\n")
    sid = session_id_in(first.stderr)
    env = {**os.environ, **{k: v for k, v in cli.env.items() if v is not None}}
    for k, v in cli.env.items():
        if v is None:
            env.pop(k, None)
    cmd = (
        f"echo hello | {shlex.quote(sys.executable)} -m mofa_sdk.cli chat --session {sid} "
        f"--base-url {shlex.quote(fault.base_url)}"
    )
    proc = await asyncio.create_subprocess_shell(
        cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode() == "Hi from a pipe\n"
    assert [m.content for m in await messages_of(cli, sid)] == ["start", "first", "hello", "Hi from a pipe"]
