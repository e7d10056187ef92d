"""``mofa chat`` in a real terminal (pexpect, a pty) against a slow streaming server: Ctrl-C stops only
the reply, the session goes on, ``/exit``, Ctrl-C and Ctrl-D at the prompt quit with status 0."""

from __future__ import annotations

import asyncio
import os
import sys

import pexpect

from tests.support.cli import Cli, messages_of, session_id_in
from tests.support.fault_server import FaultServer, Reply

UUID_RE = r"session ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"


def _spawn(cli: Cli, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k not in cli.env}
    env.update({k: v for k, v in cli.env.items() if v is not None})
    env["TERM"] = "xterm"
    return pexpect.spawn(
        sys.executable,
        ["-m", "mofa_sdk.cli", "chat", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )


async def test_ctrl_c_stops_only_the_reply(cli: Cli, fault: FaultServer) -> None:
    # a reply of 300 chunks, one every 50 ms: still streaming when Ctrl-C comes
    fault.push(Reply(chunks=300, chunk_delay=0.05), Reply(chunks=["All ", "good."]))

    def talk() -> tuple[str, int | None, str]:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect(UUID_RE)
            sid = str(child.match.group(1))
            child.expect_exact("you> ")
            child.sendline("tell me a long story")
            child.expect_exact("tok3 ")  # the reply is streaming
            child.sendintr()
            child.expect_exact("reply stopped")
            child.expect_exact("you> ")  # the chat goes on
            child.sendline("are you there?")
            child.expect_exact("All good.")
            child.expect_exact("you> ")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
            transcript = str(child.before)
        finally:
            child.close()
        return sid, child.exitstatus, transcript

    sid, status, _ = await asyncio.to_thread(talk)
    assert status == 0
    rows = await messages_of(cli, sid)
    assert [(m.role, m.status) for m in rows] == [
        ("user", "complete"),
        ("assistant", "cancelled"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert rows[1].content.startswith("tok0 tok1 tok2 tok3 ")
    assert len(rows[1].content.split()) < 300
    assert rows[3].content == "All good."
    # the server saw the client hang up, and the next request carried the partial reply the user saw
    assert fault.requests[0].client_disconnected
    sent = fault.requests[1].body["messages"]
    assert sent[0] == {"role": "user", "content": "tell me a long story"}
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == rows[1].content


async def test_ctrl_c_and_ctrl_d_at_the_prompt_quit_cleanly(cli: Cli, fault: FaultServer) -> None:
    def quit_with(key: str) -> tuple[str, int | None]:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect(UUID_RE)
            sid = str(child.match.group(1))
            child.expect_exact("you> ")
            child.sendline("hi")
            child.expect_exact("tok2")
            child.expect_exact("you> ")
            if key == "c":  # the first Ctrl-C clears the line, the second in a row quits
                child.send("half a thought")
                # the echo first: a SIGINT that lands while readline is still taking the keys only acts
                # at the next key (CPython's readline waits in select() without checking signals again)
                child.expect_exact("half a thought")
                child.sendintr()
                child.expect_exact("Ctrl-C again")
                child.expect_exact("you> ")
                child.sendintr()
            else:
                child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return sid, child.exitstatus

    for key in ("c", "d"):
        sid, status = await asyncio.to_thread(quit_with, key)
        assert status == 0, key
        assert [m.status for m in await messages_of(cli, sid)] == ["complete", "complete"]


async def test_resume_in_a_terminal_shows_the_session_id(cli: Cli, fault: FaultServer) -> None:
    first = await cli("chat", "--base-url", fault.base_url, input="remember me\n")
    sid = session_id_in(first.stderr)

    def resume() -> int | None:
        child = _spawn(cli, "--session", sid, "--base-url", fault.base_url)
        try:
            child.expect(UUID_RE)
            assert child.match.group(1) == sid
            child.expect_exact("you> ")
            child.sendline("/history")
            child.expect_exact("remember me")
            child.expect_exact("you> ")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        status: int | None = child.exitstatus
        return status

    assert await asyncio.to_thread(resume) == 0


async def test_ctrl_c_clears_the_line_and_the_chat_goes_on(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=["fine"]))

    def talk() -> tuple[str, int | None]:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect(UUID_RE)
            sid = str(child.match.group(1))
            child.expect_exact("you> ")
            child.send("never sent")
            child.expect_exact("never sent")  # echoed (see test_ctrl_c_and_ctrl_d_at_the_prompt_quit_cleanly)
            child.sendintr()
            child.expect_exact("you> ")
            child.sendline("sent")
            child.expect_exact("fine")
            child.expect_exact("you> ")
            child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return sid, child.exitstatus

    sid, status = await asyncio.to_thread(talk)
    assert status == 0
    assert [m.content for m in await messages_of(cli, sid)] == ["sent", "fine"]
    assert fault.requests[0].body["messages"] == [{"role": "user", "content": "sent"}]


async def test_multi_line_message_and_window_shown(cli: Cli, fault: FaultServer) -> None:
    def talk() -> tuple[str, int | None, str]:
        child = _spawn(cli, "--base-url", fault.base_url, "--window", "3")
        try:
            child.expect(UUID_RE)
            sid = str(child.match.group(1))
            child.expect_exact("you> ")
            child.sendline("/window")
            child.expect_exact("window: 3 rounds")
            child.expect_exact("you> ")
            child.sendline("/multi")
            child.expect_exact("...> ")
            child.sendline("first line")
            child.expect_exact("...> ")
            child.sendline("  second, indented")
            child.expect_exact("...> ")
            child.sendline("/end")
            child.expect_exact("tok2")
            child.expect_exact("you> ")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
            out = str(child.before)
        finally:
            child.close()
        return sid, child.exitstatus, out

    sid, status, _ = await asyncio.to_thread(talk)
    assert status == 0
    rows = await messages_of(cli, sid)
    assert rows[0].content == "first line\n  second, indented"
    assert len(fault.requests) == 1


async def test_new_leaves_no_empty_session(cli: Cli, fault: FaultServer) -> None:
    def talk() -> int | None:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect_exact("you> ")
            child.sendline("/new")  # the first session has no message: it goes
            child.expect_exact("new session")
            child.expect_exact("you> ")
            child.sendline("hello")
            child.expect_exact("tok2")
            child.expect_exact("you> ")
            child.sendline("/new")  # the second is kept; the third, empty at exit, goes too
            child.expect_exact("you> ")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        status: int | None = child.exitstatus
        return status

    assert await asyncio.to_thread(talk) == 0
    store = await cli.store()
    try:
        sessions = await store.get_user_sessions(cli.tenant, cli.user)
        assert len(sessions) == 1
        assert await store.count_session_messages(cli.tenant, sessions[0].id) == 2
    finally:
        await store.close()


async def test_ctrl_c_during_start_up_is_one_line(cli: Cli) -> None:
    """Ctrl-C while the chat connects to a database that does not answer: one line, status 130."""
    import socket

    with socket.socket() as listener:  # accepts the connection, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def talk() -> tuple[int | None, str]:
            child = _spawn(cli, "--db", f"postgresql://postgres@127.0.0.1:{port}/none")
            try:
                conn, _ = listener.accept()  # the chat is starting up now
                with conn:
                    child.sendintr()
                    child.expect(pexpect.EOF)
                out = str(child.before)
            finally:
                child.close()
            return child.exitstatus, out

        status, out = await asyncio.to_thread(talk)
    assert status == 130
    assert "Traceback" not in out
    assert [line.replace("^C", "") for line in out.splitlines() if line.strip()] == ["interrupted"]


async def test_keys_typed_while_a_reply_streams_are_not_echoed_or_sent(cli: Cli, fault: FaultServer) -> None:
    fault.push(Reply(chunks=20, chunk_delay=0.05), Reply(chunks=["ok"]))

    def talk() -> tuple[int | None, str]:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect_exact("you> ")
            child.sendline("go")
            child.expect_exact("tok2 ")
            child.send("zzqq")  # typed while the reply streams
            child.expect_exact("tok19")
            child.expect_exact("you> ")
            child.sendline("next")
            child.expect_exact("ok")
            child.expect_exact("you> ")
            child.sendline("/exit")
            child.expect(pexpect.EOF)
            out = str(child.before)
        finally:
            child.close()
        return child.exitstatus, out

    status, _ = await asyncio.to_thread(talk)
    assert status == 0
    assert fault.requests[1].body["messages"][-1] == {"role": "user", "content": "next"}


async def test_a_pasted_block_of_lines_is_one_message(cli: Cli, fault: FaultServer) -> None:
    """A terminal wraps a paste in bracketed-paste marks (readline turns the mode on): the lines pasted
    stay one message, sent when Enter is pressed."""

    def talk() -> tuple[str, int | None]:
        child = _spawn(cli, "--base-url", fault.base_url)
        try:
            child.expect(UUID_RE)
            sid = str(child.match.group(1))
            child.expect_exact("you> ")
            child.send("\x1b[200~line one\nline two\n  line three\x1b[201~")
            child.send("\r")
            child.expect_exact("tok2")
            child.expect_exact("you> ")
            child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return sid, child.exitstatus

    sid, status = await asyncio.to_thread(talk)
    assert status == 0
    assert len(fault.requests) == 1
    rows = await messages_of(cli, sid)
    assert rows[0].content == "line one\nline two\n  line three"
