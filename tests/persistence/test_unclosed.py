"""A script that never closes its agent or store still exits, at once and silently, with what was saved
saved: the seed's automatic example translated line by line never calls ``aclose()``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from mofa_sdk.persistence import connect_store

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from mofa_sdk.llm import ScriptedProvider
    from mofa_sdk.persistence import quick_agent_with_memory, quick_agent_with_postgres, quick_agent_with_sqlite

    async def main(kind, url, session, turn, shared):
        if kind == "memory":
            builder = quick_agent_with_memory("You are helpful.")
        elif kind == "sqlite":
            builder = quick_agent_with_sqlite("You are helpful.", url)
        else:
            builder = quick_agent_with_postgres("You are helpful.", database_url=url)
        agent = await (builder.with_provider(ScriptedProvider(["Hello there, friend."], delta_delay=0.001))
                       .with_session_id(session).with_sliding_window(2).build_async())
        if turn == "turn":
            async for text in agent.chat_stream("hi"):
                print(text, end="", flush=True)
            print()
        if shared == "shared":  # a second store the script also forgets
            from mofa_sdk.persistence import PostgresStore, SqliteStore
            other = await (PostgresStore.shared(url) if kind == "postgres" else SqliteStore.connect(
                f"sqlite:///{url}"))
            await other.get_session(agent.tenant_id, agent.session_id)
        print("LAST", flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


CASES = [(kind, turn, "-") for kind in ("memory", "sqlite", "postgres") for turn in ("turn", "no-turn")]
CASES += [("sqlite", "turn", "shared"), ("postgres", "turn", "shared")]  # and a second store left open


@pytest.mark.parametrize(("kind", "turn", "shared"), CASES)
async def test_a_script_that_closes_nothing_exits_silently(
    kind: str, turn: str, shared: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = str(tmp_path / "chat.db") if kind == "sqlite" else (
        str(request.getfixturevalue("pg_url")) if kind == "postgres" else "")
    session = uuid.uuid4()
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "USER_ID", "TENANT_ID", "SESSION_ID", "DATABASE_URL"):
        env.pop(name, None)
    try:
        done = subprocess.run(
            [sys.executable, str(script), kind, url, str(session), turn, shared],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the script did not exit: it hung after printing {exc.stdout!r}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"the script's exit was not silent: {done.stderr}"
    assert done.stdout.endswith("LAST\n")
    if turn == "turn":
        assert done.stdout.startswith("Hello there, friend.\n")
    if kind == "memory":
        return
    store = await connect_store(f"sqlite:///{url}" if kind == "sqlite" else url)
    try:
        nil = uuid.UUID(int=0)
        messages = await store.get_session_messages(nil, session)
        assert [(m.role, m.content, m.status) for m in messages] == (
            [("user", "hi", "complete"), ("assistant", "Hello there, friend.", "complete")] if turn == "turn" else []
        )
    finally:
        await store.close()
