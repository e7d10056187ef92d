"""``mofa chat`` when its session is deleted from another terminal, when the database goes away and comes
back (or not) before the input ends, and what reaches stderr meanwhile; an SQLite path that cannot be opened.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from pathlib import Path

from mofa_sdk.entities import QueryFilter
from tests.support.cli import Cli, messages_of, session_id_in
from tests.support.fault_server import FaultServer, Reply
from tests.support.pg_cluster import PgCluster

#: what the chat itself writes to stderr; a line starting otherwise came from somewhere else
CHAT_LINES = ("session ", "warning: ", "error: ", "note: ", "saved ")


async def until(check: object, what: str) -> None:
    """Poll ``check()`` (sync or async) until true; a guard against a hang, not a speed check."""
    for _ in range(3000):
        got = check()  # type: ignore[operator]
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_chat_goes_on_after_its_session_is_deleted_mid_reply(db_url: str, fault: FaultServer) -> None:
    cli = Cli(db_url, uuid.uuid4(), uuid.uuid4())
    fault.push(Reply(chunks=40, chunk_delay=0.02), Reply(chunks=["on", " a new session"]))
    chat = asyncio.create_task(
        cli("chat", "--base-url", fault.base_url, "--lines", input="first\nsecond\n/new\nthird\n")
    )
    await until(lambda: fault.requests and fault.requests[0].chunks_written >= 3, "the first reply")
    store = await cli.store()
    try:
        (session,) = await store.get_user_sessions(cli.tenant, cli.user)
    finally:
        await store.close()
    deleted = await cli("sessions", "delete", str(session.id), "--yes")  # another terminal
    assert deleted.exit_code == 0, deleted.output
    result = await asyncio.wait_for(chat, 120)
    assert "Traceback" not in result.output
    err = result.stderr
    # the turn after /new was answered and saved
    assert result.stdout.endswith("on a new session\n"), err
    found = re.search(r"^new session ([0-9a-f-]{36})$", err, re.MULTILINE)
    assert found is not None, err
    assert [(m.role, m.content, m.status) for m in await messages_of(cli, found.group(1))] == [
        ("user", "third", "complete"),
        ("assistant", "on a new session", "complete"),
    ]
    # and the chat said what happened, and what to do
    assert f"session {session.id} was deleted while this reply streamed" in err
    assert f"session {session.id} no longer exists" in err and "/new starts a new session" in err
    assert result.exit_code == 1  # piped: two turns failed (the deleted reply, the turn on the deleted session)


async def _chat_through_an_outage(
    cluster: PgCluster, fault: FaultServer, tmp_path: Path, *, back_before_exit: bool, flush_timeout: float
) -> tuple[Cli, int, str, str]:
    """`mofa chat` as a real process, stdin a pipe: the server stops while the first reply streams; it is
    started again before the input ends when ``back_before_exit``. Returns the exit status, stdout, stderr."""
    cli = Cli(cluster.url(), uuid.uuid4(), uuid.uuid4())
    fault.push(Reply(chunks=30, chunk_delay=0.05))
    env = {k: v for k, v in os.environ.items() if k not in cli.env}
    env.update({k: v for k, v in cli.env.items() if v is not None})
    env["MOFA_FLUSH_TIMEOUT"] = str(flush_timeout)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mofa_sdk.cli", "chat", "--base-url", fault.base_url, "--lines",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err_lines: list[str] = []

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            err_lines.append(raw.decode())

    reader = asyncio.create_task(read_stderr())
    try:
        proc.stdin.write(b"tell me something\n")
        await proc.stdin.drain()
        await until(lambda: fault.requests and fault.requests[0].chunks_written >= 3, "the reply")
        await asyncio.to_thread(cluster.stop, "immediate")
        await until(
            lambda: any(line.startswith("warning: ") and "saved" in line for line in err_lines), "the unsaved warning"
        )
        if back_before_exit:
            await asyncio.to_thread(cluster.start)
        proc.stdin.close()  # the input ends: the chat exits
        out = await asyncio.wait_for(proc.stdout.read(), 120)
        status = await asyncio.wait_for(proc.wait(), 120)
        await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return cli, status, out.decode(), "".join(err_lines)


async def test_chat_writes_a_reply_kept_during_an_outage_before_it_exits(
    cluster: PgCluster, fault: FaultServer, tmp_path: Path
) -> None:
    cli, status, out, err = await _chat_through_an_outage(
        cluster, fault, tmp_path, back_before_exit=True, flush_timeout=60
    )
    whole = "".join(f"tok{i} " for i in range(30))
    assert out == whole + "\n"
    assert status == 0, err
    assert "saved 1 reply that could not be saved earlier" in err
    assert "will be written before the next turn" not in err
    assert all(line.startswith(CHAT_LINES) for line in err.splitlines()), err
    sid = session_id_in(err)
    rows = await messages_of(cli, sid)
    assert [(m.role, m.content, m.status) for m in rows] == [
        ("user", "tell me something", "complete"),
        ("assistant", whole, "complete"),
    ]
    store = await cli.store()
    try:
        (call,) = await store.query_api_calls(QueryFilter(tenant_id=cli.tenant, session_id=uuid.UUID(sid)))
        assert call.status == "success" and call.response_message_id == rows[1].id
    finally:
        await store.close()


async def test_chat_says_in_one_line_what_it_could_not_save_at_exit(
    cluster: PgCluster, fault: FaultServer, tmp_path: Path
) -> None:
    """The server stays down: the exit waits at most MOFA_FLUSH_TIMEOUT, then one line says what is lost.
    The pool's reconnection warnings do not flood stderr meanwhile."""
    _, status, out, err = await _chat_through_an_outage(
        cluster, fault, tmp_path, back_before_exit=False, flush_timeout=1
    )
    assert out == "".join(f"tok{i} " for i in range(30)) + "\n"
    assert status == 1
    lost = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lost) == 1 and lost[0].startswith("error: 1 reply shown in this chat could not be saved and is lost")
    assert all(line.startswith(CHAT_LINES) for line in err.splitlines()), err
    assert "error connecting in" not in err and "psycopg" not in err
    assert len(err.splitlines()) <= 6, err


async def test_an_sqlite_path_that_cannot_be_opened_is_one_error_line(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()  # a folder where the database file should be
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TENANT_ID", "USER_ID")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mofa_sdk.cli", "sessions", "list", "--db", f"sqlite:///{folder}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = err.decode().splitlines()
    assert proc.returncode == 1
    assert lines == [f"error: opening SQLite database {folder}: unable to open database file"], lines
