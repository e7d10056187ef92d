"""Stateless clients threaded into one conversation (issue 23): a Chat Completions client that resends its whole
history continues the session holding it and stores only what is new; an edit of an earlier message is a new
branch; equal histories of two users never meet; ``thread_history=False`` turns it off."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from mofa_sdk.persistence import connect_store
from mofa_sdk.server import ServeConfig
from tests.server.support import ByContent, InProcess, auth, in_process, make_key

SESSION = "x-mofa-session-id"


async def _chat(app: InProcess, key: str, messages: list[dict[str, Any]], sid: str | None = None) -> tuple[str, str]:
    """(the session it went to, the reply's text)."""
    headers = auth(key) | ({SESSION: sid} if sid else {})
    r = await app.client.post(f"{app.url}/v1/chat/completions", headers=headers,
                              json={"model": "m", "messages": messages})
    assert r.status_code == 200, r.text
    return r.headers[SESSION], r.json()["choices"][0]["message"]["content"]


async def _rows(app: InProcess, row: Any, sid: str) -> list[tuple[str, str]]:
    store = await connect_store(app.db)
    try:
        return [(m.role, m.content) for m in await store.get_session_messages(row.tenant_id, uuid.UUID(sid))]
    finally:
        await store.close()


async def _sessions(app: InProcess, row: Any) -> int:
    store = await connect_store(app.db)
    try:
        return len(await store.get_user_sessions(row.tenant_id, row.user_id))
    finally:
        await store.close()


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


async def test_a_resent_history_continues_its_session_without_duplicates(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    history: list[dict[str, Any]] = [{"role": "system", "content": "be brief"}, _user("q1 words=2")]
    sid, a1 = await _chat(in_app, key, history)
    history += [_assistant(a1), _user("q2 words=3")]
    sid2, a2 = await _chat(in_app, key, history)
    history += [_assistant(a2), _user("q3 words=1")]
    # the system prompt may change from turn to turn: it is not part of the chain
    history[0] = {"role": "system", "content": "be very brief"}
    sid3, a3 = await _chat(in_app, key, history)
    assert sid == sid2 == sid3 and await _sessions(in_app, row) == 1
    assert await _rows(in_app, row, sid) == [
        ("system", "be brief"), ("user", "q1 words=2"), ("assistant", a1), ("user", "q2 words=3"),
        ("assistant", a2), ("user", "q3 words=1"), ("assistant", a3)]
    # with the session named, the same rule decides what is new
    history += [_assistant(a3), _user("q4 words=1")]
    named, a4 = await _chat(in_app, key, history, sid)
    assert named == sid and (await _rows(in_app, row, sid))[-2:] == [("user", "q4 words=1"), ("assistant", a4)]
    assert len(await _rows(in_app, row, sid)) == 9


async def test_an_edit_of_an_earlier_message_is_a_new_branch(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    sid, a1 = await _chat(in_app, key, [_user("first words=2")])
    _, a2 = await _chat(in_app, key, [_user("first words=2"), _assistant(a1), _user("second words=2")])
    edited = [_user("first, edited words=2"), _assistant(a1), _user("second words=2")]
    branch, _ = await _chat(in_app, key, edited)
    assert branch != sid and await _sessions(in_app, row) == 2
    assert [m for m in await _rows(in_app, row, branch)][:3] == [(m["role"], m["content"]) for m in edited]
    # the original is left as it was
    assert await _rows(in_app, row, sid) == [("user", "first words=2"), ("assistant", a1),
                                              ("user", "second words=2"), ("assistant", a2)]


async def test_two_users_with_equal_histories_get_two_sessions(in_app: InProcess) -> None:
    key_a, row_a = await make_key(in_app.db)
    key_b, row_b = await make_key(in_app.db, tenant=row_a.tenant_id)  # same tenant, another user
    sid_a, reply = await _chat(in_app, key_a, [_user("same words=2")])
    sid_b, reply_b = await _chat(in_app, key_b, [_user("same words=2")])
    assert reply == reply_b and sid_a != sid_b
    history = [_user("same words=2"), _assistant(reply), _user("next words=1")]
    sid, next_reply = await _chat(in_app, key_b, history)
    assert sid == sid_b
    # B's longer history, sent by A, continues A's own session (which holds its first two messages), not B's
    longer = [*history, _assistant(next_reply), _user("more words=1")]
    assert (await _chat(in_app, key_a, longer))[0] == sid_a
    assert len(await _rows(in_app, row_a, sid_a)) == 6 and len(await _rows(in_app, row_b, sid_b)) == 4


async def test_the_switch_turns_threading_off(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'off.db'}"
    store = await connect_store(db)
    try:
        config = ServeConfig(max_reply_chars=None, thread_history=False)
        async with in_process(store, ByContent(2, 0.0), db, config) as app:
            key, row = await make_key(db)
            sid, a1 = await _chat(app, key, [_user("q1")])
            sid2, _ = await _chat(app, key, [_user("q1"), _assistant(a1), _user("q2")])
            assert sid != sid2 and await _sessions(app, row) == 2
            assert [r for r, _ in await _rows(app, row, sid2)] == ["user", "assistant"]  # as before threading
    finally:
        await store.close()


async def test_a_responses_input_list_is_threaded_too(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)

    async def respond(items: list[dict[str, Any]]) -> dict[str, Any]:
        r = await in_app.client.post(f"{in_app.url}/v1/responses", headers=auth(key),
                                     json={"model": "m", "input": items})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    first = await respond([_user("hello words=2"), _assistant("earlier answer"), _user("r1 words=2")])
    text = first["output"][0]["content"][0]["text"]
    await respond([_user("hello words=2"), _assistant("earlier answer"), _user("r1 words=2"), _assistant(text),
                   _user("r2 words=1")])
    assert await _sessions(in_app, row) == 1
    store = await connect_store(in_app.db)
    try:
        (session,) = await store.get_user_sessions(row.tenant_id, row.user_id)
        rows = await store.get_session_messages(row.tenant_id, session.id)
    finally:
        await store.close()
    assert [(m.role, m.content) for m in rows][:5] == [
        ("user", "hello words=2"), ("assistant", "earlier answer"), ("user", "r1 words=2"), ("assistant", text),
        ("user", "r2 words=1")] and len(rows) == 6


def test_the_switch_reaches_every_worker_and_the_cli_names_it() -> None:
    import json

    from typer.testing import CliRunner

    from mofa_sdk.cli import app as cli
    from mofa_sdk.server import config_to_env

    # `mofa serve` hands its settings to uvicorn's workers as JSON: the switch survives the trip
    assert ServeConfig(**json.loads(config_to_env(ServeConfig(thread_history=False)))).thread_history is False
    assert ServeConfig().thread_history is True
    shown = CliRunner().invoke(cli, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--no-thread-history" in shown
