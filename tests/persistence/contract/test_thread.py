"""``find_thread``: the history chain (migration 0010) on every store — which session a resent history
continues, never another user's or tenant's, and links that follow edits and deletes."""

from __future__ import annotations

import uuid

import pytest

from mofa_sdk.entities import MessageToolCall, Session
from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import ChatMessage, FilePart, ImagePart, TextPart, ToolCall
from mofa_sdk.persistence import Store
from mofa_sdk.persistence._chain import chain_of
from tests.support.builders import msg, new_session

_TALK = [("user", "hi"), ("assistant", "hello"), ("user", "more"), ("assistant", "sure")]


def _chat(pairs: list[tuple[str, str]]) -> list[ChatMessage]:
    return [ChatMessage(role=r, content=c) for r, c in pairs]  # type: ignore[arg-type]


async def _stored(store: Store, s: Session, pairs: list[tuple[str, str]]) -> None:
    await store.save_messages([msg(s, c, role=r) for r, c in pairs])


async def test_the_longest_stored_prefix_names_the_session(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    long = await new_session(store, tenant, user)
    short = await new_session(store, tenant, user)
    await _stored(store, long, _TALK)
    await _stored(store, short, _TALK[:2])

    found = await store.find_thread(tenant, user, chain_of(_chat(_TALK)))
    assert found is not None and (found.session_id, found.matched) == (long.id, 4)
    # "hi, hello" is the whole of `short` and only the start of `long`: only a session's last row counts
    found = await store.find_thread(tenant, user, chain_of(_chat([*_TALK[:2], ("user", "x")]))[:2])
    assert found is not None and (found.session_id, found.matched) == (short.id, 2)
    # an edit of an earlier message matches nothing past the edit: here, the two messages before it
    edited = chain_of(_chat([*_TALK[:2], ("user", "MORE"), ("assistant", "sure")]))
    found = await store.find_thread(tenant, user, edited)
    assert found is not None and (found.session_id, found.matched) == (short.id, 2)
    assert await store.find_thread(tenant, user, chain_of(_chat([("user", "other")]))) is None
    # only the session named, when one is
    found = await store.find_thread(tenant, user, chain_of(_chat(_TALK)), session_id=short.id)
    assert found is not None and (found.session_id, found.matched) == (short.id, 2)


async def test_equal_histories_of_other_users_and_tenants_never_match(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    for t, u in ((tenant, uuid.uuid4()), (uuid.uuid4(), user)):
        await _stored(store, await new_session(store, t, u), _TALK)
    assert await store.find_thread(tenant, user, chain_of(_chat(_TALK))) is None
    mine = await new_session(store, tenant, user)
    await _stored(store, mine, _TALK)
    found = await store.find_thread(tenant, user, chain_of(_chat(_TALK)))
    assert found is not None and found.session_id == mine.id


async def test_edits_and_deletes_relink_the_session(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    rows = await store.save_messages([msg(s, c, role=r) for r, c in _TALK])
    assert await store.find_thread(tenant, user, chain_of(_chat(_TALK))) is not None  # links written now
    await store.update_message(tenant, rows[2].id, content="changed")
    assert await store.find_thread(tenant, user, chain_of(_chat(_TALK))) is None
    changed = [*_TALK[:2], ("user", "changed"), _TALK[3]]
    found = await store.find_thread(tenant, user, chain_of(_chat(changed)))
    assert found is not None and found.matched == 4
    assert await store.delete_message(tenant, rows[1].id)
    without = [_TALK[0], ("user", "changed"), _TALK[3]]
    found = await store.find_thread(tenant, user, chain_of(_chat(without)))
    assert found is not None and (found.session_id, found.matched) == (s.id, 3)


async def test_system_rows_are_not_links_and_a_streaming_reply_matches_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    await _stored(store, s, [("system", "be brief"), *_TALK[:2]])
    found = await store.find_thread(tenant, user, chain_of(_chat([("system", "be verbose"), *_TALK])))
    assert found is not None and (found.session_id, found.matched) == (s.id, 2)
    await store.save_message(msg(s, "partial", role="assistant", status="streaming"))
    assert await store.find_thread(tenant, user, chain_of(_chat(_TALK[:2]))) is None


async def test_tool_calls_are_part_of_a_link(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    calls = [MessageToolCall(id="c1", name="add", arguments='{"a":1}')]
    await store.save_messages([
        msg(s, "add 1"), msg(s, "", role="assistant", tool_calls=calls),
        msg(s, "1", role="tool", tool_call_id="c1"), msg(s, "it is 1", role="assistant"),
    ])  # fmt: skip
    history = [
        ChatMessage(role="user", content="add 1"),
        ChatMessage(role="assistant", content="", tool_calls=(ToolCall("c1", "add", '{"a":1}'),)),
        ChatMessage(role="tool", content="1", tool_call_id="c1"),
        ChatMessage(role="assistant", content="it is 1"),
    ]
    found = await store.find_thread(tenant, user, chain_of(history))
    assert found is not None and found.matched == 4
    other = [history[0], ChatMessage(role="assistant", content="", tool_calls=(ToolCall("c1", "add", '{"a":2}'),))]
    # other arguments: a different link, so not the stored session's (which ends after four messages)
    assert chain_of(other)[1] != chain_of(history)[1]
    assert await store.find_thread(tenant, user, chain_of([*other, *history[2:]])) is None


@pytest.mark.parametrize("bad", ["abc", ["not-a-hash"], [123]])
async def test_bad_links_are_refused(store: Store, tenant: uuid.UUID, user: uuid.UUID, bad: object) -> None:
    with pytest.raises(ConfigError, match="links"):
        await store.find_thread(tenant, user, bad)  # type: ignore[arg-type]


def test_a_file_parts_name_is_part_of_a_link() -> None:
    """Two files with the same content but other names are other messages; text and image links keep their form."""
    data = "data:application/pdf;base64,JVBE"
    a, b = (ChatMessage(role="user", content="", parts=(TextPart("read"), FilePart(name, data))) for name in "ab")
    assert chain_of([a]) != chain_of([b])
    image = ChatMessage(role="user", content="", parts=(TextPart("see"), ImagePart("https://example.com/a.png")))
    assert chain_of([image]) == chain_of([image]) != chain_of([ChatMessage(role="user", content="see")])
