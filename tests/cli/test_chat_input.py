"""Issue 15: one-shot prompts and whole piped input, settings kept on a session, ids by prefix and short
id, the local model's checks (served model, context, reply cap), empty replies."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mofa_sdk.entities import QueryFilter, Session
from mofa_sdk.llm._local import find_default_model
from tests.support.cli import Cli, messages_of, one_error_line, session_id_in
from tests.support.fault_server import FaultServer, Reply


async def _sessions(cli: Cli) -> list[Session]:
    store = await cli.store()
    try:
        return list(await store.get_user_sessions(cli.tenant, cli.user))
    finally:
        await store.close()


# -- item 7: one message ---------------------------------------------------------------------------
async def test_one_shot_prompt(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["4"]))
    result = await cli("chat", "--base-url", fault.base_url, "What is 2+2?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "4\n"
    sid = session_id_in(result.stderr)
    assert [m.content for m in await messages_of(cli, sid)] == ["What is 2+2?", "4"]
    assert fault.requests[0].body["messages"] == [{"role": "user", "content": "What is 2+2?"}]


async def test_piped_input_is_one_message_below_the_prompt(cli: Cli, fault: FaultServer) -> None:
    notes = "line one\n\n  line two\nline three\n"
    result = await cli("chat", "--base-url", fault.base_url, "summarise this", input=notes)
    assert result.exit_code == 0, result.output
    assert len(fault.requests) == 1
    assert fault.requests[0].body["messages"][-1]["content"] == "summarise this\n\nline one\n\n  line two\nline three"
    # without a prompt, the whole input is the message
    again = await cli("chat", "--base-url", fault.base_url, input=notes)
    assert again.exit_code == 0, again.output
    assert len(fault.requests) == 2
    assert fault.requests[1].body["messages"][-1]["content"] == "line one\n\n  line two\nline three"


async def test_lines_is_for_piped_input_only(cli: Cli, fault: FaultServer) -> None:
    result = await cli("chat", "--base-url", fault.base_url, "--lines", "a prompt")
    assert result.exit_code == 2 and "--lines" in result.output
    assert fault.requests == []


async def test_nothing_piped_sends_nothing_and_keeps_no_session(cli: Cli, fault: FaultServer) -> None:
    result = await cli("chat", "--base-url", fault.base_url, input="")
    assert result.exit_code == 0, result.output
    assert "nothing to send" in result.stderr
    assert fault.requests == [] and await _sessions(cli) == []


# -- item 3: empty replies -------------------------------------------------------------------------
async def test_an_empty_reply_is_shown_as_such(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=[]))
    result = await cli("chat", "--base-url", fault.base_url, "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "empty reply" in result.stderr


# -- item 2: a session keeps what it was started with ----------------------------------------------
async def test_resume_keeps_system_prompt_model_and_window(cli: Cli, fault: FaultServer) -> None:
    first = await cli(
        "chat", "--base-url", fault.base_url, "--system", "You are a pirate", "--model", "my-model",
        "--window", "1", "--lines", input="a\nb\n",
    )
    assert first.exit_code == 0, first.output
    sid = session_id_in(first.stderr)
    again = await cli("chat", "-s", sid, "--base-url", fault.base_url, "c")
    assert again.exit_code == 0, again.output
    body = fault.requests[-1].body
    assert body["model"] == "my-model"
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("system", "You are a pirate"), ("user", "b"), ("assistant", "tok0 tok1 tok2 "), ("user", "c"),
    ]
    # an override is used, kept and recorded
    third = await cli("chat", "-s", sid, "--base-url", fault.base_url, "--system", "You are a robot", "d")
    assert third.exit_code == 0, third.output
    assert fault.requests[-1].body["messages"][0] == {"role": "system", "content": "You are a robot"}
    store = await cli.store()
    try:
        session = await store.get_session(cli.tenant, uuid.UUID(sid))
    finally:
        await store.close()
    assert session is not None
    assert session.settings is not None
    assert session.settings.model_dump(exclude_unset=True) == {
        "agent": None, "model": "my-model", "system_prompt": "You are a robot", "window": 1,
        "provider": f"openai-compatible {fault.base_url}/",
    }
    [change] = session.settings_changes
    assert (change.key, change.old, change.new) == ("system_prompt", "You are a pirate", "You are a robot")
    md = await cli("sessions", "export", sid, "--format", "md")
    assert "## System\n\nYou are a robot" in md.stdout
    exported = json.loads((await cli("sessions", "export", sid)).stdout)
    assert exported["system_prompt"] == "You are a robot"
    shown = await cli("sessions", "show", sid)
    assert "system  You are a robot" in shown.stdout


async def test_a_model_is_restored_only_for_the_provider_it_came_from(cli: Cli, fault: FaultServer) -> None:
    first = await cli("chat", "--base-url", fault.base_url, "--model", "my-model", "hi")
    sid = session_id_in(first.stderr)
    # resumed on the local model: the local model answers, as itself, and the switch is recorded
    again = await cli("chat", "-s", sid, "--max-tokens", "3", "again")
    assert again.exit_code == 0, again.output
    store = await cli.store()
    try:
        session = await store.get_session(cli.tenant, uuid.UUID(sid))
        calls = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant))
    finally:
        await store.close()
    assert session is not None
    assert sorted(c.model_name for c in calls) == sorted(["my-model", LOCAL])
    assert {c.key for c in session.settings_changes} == {"provider", "model"}
    assert len(session.settings_changes) == 2


# -- item 8: sessions addressed like commits -------------------------------------------------------
async def test_continue_resumes_the_most_recent_session(cli: Cli, fault: FaultServer) -> None:
    older = session_id_in((await cli("chat", "--base-url", fault.base_url, "older")).stderr)
    newer = session_id_in((await cli("chat", "--base-url", fault.base_url, "newer")).stderr)
    assert older != newer
    result = await cli("chat", "-c", "--base-url", fault.base_url, "and then?")
    assert result.exit_code == 0, result.output
    assert session_id_in(result.stderr) == newer
    assert [m["content"] for m in fault.requests[-1].body["messages"]] == ["newer", "tok0 tok1 tok2 ", "and then?"]
    line = one_error_line(await cli("chat", "-c", "-s", older, "--base-url", fault.base_url, "x"))
    assert "--continue" in line


async def test_continue_with_no_session(cli: Cli, fault: FaultServer) -> None:
    line = one_error_line(await cli("chat", "-c", "--base-url", fault.base_url, "x"))
    assert "no session to continue" in line
    assert fault.requests == []


async def _twins(cli: Cli) -> tuple[uuid.UUID, uuid.UUID]:
    """Two sessions whose ids share their first 8 digits (as uuid7s of one minute do)."""
    store = await cli.store()
    try:
        a = uuid.UUID("0193aaaa-0001-7000-8000-" + uuid.uuid4().hex[:12])
        b = uuid.UUID("0193aaaa-0002-7000-8000-" + uuid.uuid4().hex[:12])
        for sid, title in ((a, "first twin"), (b, "second twin")):
            await store.create_session(Session(id=sid, tenant_id=cli.tenant, user_id=cli.user, title=title))
        return a, b
    finally:
        await store.close()


async def test_prefixes_and_short_ids_wherever_an_id_is_taken(cli: Cli, fault: FaultServer) -> None:
    a, b = await _twins(cli)
    line = one_error_line(await cli("sessions", "show", "0193aaaa"))
    assert "matches several sessions" in line and str(a) in line and str(b) in line
    shown = await cli("sessions", "show", "0193aaaa-0002")
    assert shown.exit_code == 0 and "second twin" in shown.stdout
    short = str(a)[-8:]
    assert "first twin" in (await cli("sessions", "show", short)).stdout
    assert (await cli("sessions", "export", short)).exit_code == 0
    listed = await cli("sessions", "list")
    assert short in listed.stdout and str(a) not in listed.stdout  # lists show the short id
    # chat --session and /switch take them too
    resumed = await cli("chat", "-s", short, "--base-url", fault.base_url, "hello")
    assert resumed.exit_code == 0, resumed.output
    assert session_id_in(resumed.stderr) == str(a)
    switched = await cli("chat", "--base-url", fault.base_url, "--lines", input=f"/switch {str(b)[-8:]}\nhi\n")
    assert switched.exit_code == 0, switched.output
    assert [m.content for m in await messages_of(cli, b)] == ["hi", "tok0 tok1 tok2 "]
    deleted = await cli("sessions", "delete", "0193aaaa-0002", "-y")
    assert deleted.exit_code == 0, deleted.output
    assert {s.id for s in await _sessions(cli)} == {a}


async def test_sessions_list_piped_is_one_line_per_session(cli: Cli, fault: FaultServer) -> None:
    long = "a rather long first message " * 6
    for text in (long, "short"):
        assert (await cli("chat", "--base-url", fault.base_url, text)).exit_code == 0
    out = (await cli("sessions", "list", env={"COLUMNS": "80"})).stdout
    assert len([line for line in out.splitlines() if line.strip()]) == 3  # the header and two sessions


# -- items 1, 3 and 4: the local model -------------------------------------------------------------
LOCAL = find_default_model().stem


async def test_a_model_the_local_provider_cannot_serve_is_an_error(cli: Cli) -> None:
    line = one_error_line(await cli("chat", "--model", "gpt-4o", "hi"))
    assert "gpt-4o" in line and LOCAL in line
    assert await _sessions(cli) == []  # nothing was written


async def test_the_local_model_is_named_and_capped(cli: Cli) -> None:
    result = await cli("chat", "--model", LOCAL, "--max-tokens", "4", "-t", "0", "-o", "top_k=1", "Count to 50.")
    assert result.exit_code == 0, result.output
    store = await cli.store()
    try:
        [call] = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant))
    finally:
        await store.close()
    assert call.model_name == LOCAL  # the ledger names the model that answered
    assert call.completion_tokens <= 4


async def test_a_prompt_over_the_local_context_is_refused_before_the_call(cli: Cli) -> None:
    line = one_error_line(await cli("chat", "word " * 3000))
    assert "does not fit" in line and "2,048-token context" in line
    assert await _sessions(cli) == []  # nothing saved, no empty session left


async def test_the_local_model_gets_a_default_reply_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mofa_sdk.cli._chat import ChatApp, ChatOptions
    from mofa_sdk.llm import LOCAL_MAX_TOKENS

    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MOFA_MAX_TOKENS"):
        monkeypatch.delenv(var, raising=False)
    blank = ChatOptions(None, None, None, None, f"sqlite:///{tmp_path / 'chat.db'}", None, None, None, None)

    async def cap() -> int | None:
        app = ChatApp(blank, False, None)  # type: ignore[arg-type]
        await app.start()
        try:
            assert app.agent is not None
            return app.agent.params.max_tokens
        finally:
            await app.close()

    assert await cap() == LOCAL_MAX_TOKENS  # the local provider's own default (issue 21: not the CLI's)
    monkeypatch.setenv("MOFA_MAX_TOKENS", "33")
    assert await cap() == 33


async def test_request_options_reach_the_server(cli: Cli, fault: FaultServer) -> None:
    result = await cli(
        "chat", "--base-url", fault.base_url, "--max-tokens", "9", "--temperature", "0.5",
        "-o", "top_p=0.9", "-o", "user=alice", "-o", 'stop=["\\n"]', "hi",
    )
    assert result.exit_code == 0, result.output
    body = fault.requests[0].body
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["user"] == "alice"
    assert body["stop"] == ["\n"]
    assert body.get("max_tokens", body.get("max_completion_tokens")) == 9
    line = one_error_line(await cli("chat", "--base-url", fault.base_url, "-o", "model=x", "hi"))
    assert "--model" in line
    line = one_error_line(await cli("chat", "--base-url", fault.base_url, "-o", "novalue", "hi"))
    assert "key=value" in line


# -- item 9: search -----------------------------------------------------------------------------------
async def test_sessions_search(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["Arr, the treasure is buried."]), Reply(chunks=["Nothing here."]))
    pirate = session_id_in((await cli("chat", "--base-url", fault.base_url, "Where is the Treasure?")).stderr)
    assert (await cli("chat", "--base-url", fault.base_url, "Something else")).exit_code == 0
    result = await cli("sessions", "search", "treasure")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 2 and all(line.startswith(pirate[-8:]) for line in rows)
    assert "buried" in result.stdout and "Something" not in result.stdout
    other_user = await cli("sessions", "search", "treasure", "--user", str(uuid.uuid4()))
    assert "no message holds" in other_user.stdout
    assert "word" in one_error_line(await cli("sessions", "search", "***"))


async def test_help_shows_no_bool_beside_flags(cli: Cli) -> None:
    for args in (["chat", "-h"], ["sessions", "list", "-h"], ["usage", "-h"], ["providers", "add", "-h"]):
        out = (await cli(*args)).stdout
        assert [line for line in out.splitlines() if "<bool>" in line and "--help" not in line] == [], args
    out = (await cli("chat", "-h")).stdout
    assert "--session" in out and " ID " in out and "KEY=VALUE" in out
