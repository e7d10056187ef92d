"""The Conversations API through the official ``openai`` client against a real served process: a conversation is
a session, its items are its messages (same ids through the native API), pagination by cursor, errors in
OpenAI's shape with nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from mofa_sdk.persistence import connect_store
from tests.server.support import InProcess, auth, make_key, openai_client


def _text(item: Any) -> str:
    """The first content part's text of a message item (the SDK types an item as any of some 30 kinds)."""
    text: str = item.content[0].text
    return text


async def _sessions(db: str, tenant: uuid.UUID, user: uuid.UUID) -> tuple[int, int]:
    store = await connect_store(db)
    try:
        found = await store.get_user_sessions(tenant, user, limit=1000)
        return len(found), sum([await store.count_session_messages(tenant, s.id) for s in found])
    finally:
        await store.close()


async def test_conversation_crud_items_in_order_paginated(in_app: InProcess) -> None:
    client = in_app.client
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    conv = await oa.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "first"},
               # an assistant turn with output_text parts: the wire accepts it, the SDK's item types do not say so
               {"role": "assistant",  # type: ignore[misc, list-item]
                "content": [{"type": "output_text", "text": "second"}]},
               {"role": "user", "content": [{"type": "input_text", "text": "thi"}, {"type": "input_text",
                                                                                     "text": "rd"}]}],
    )
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "demo"}
    assert (await oa.conversations.retrieve(conv.id)).metadata == {"topic": "demo"}
    updated = await oa.conversations.update(conv.id, metadata={"topic": "changed", "k": "v"})
    assert updated.metadata == {"topic": "changed", "k": "v"}

    added = await oa.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "user", "content": f"more {i}"} for i in range(4)])
    assert [_text(i) for i in added.data] == [f"more {i}" for i in range(4)]

    texts = ["first", "second", "third", "more 0", "more 1", "more 2", "more 3"]
    asc = [i async for i in oa.conversations.items.list(conv.id, order="asc", limit=3)]  # pages of 3, by cursor
    assert [_text(i) for i in asc] == texts
    page = await oa.conversations.items.list(conv.id, limit=2)  # default order: newest first
    assert [_text(i) for i in page.data] == ["more 3", "more 2"]
    # first_id: a field of the wire page that the SDK's page class leaves out
    assert page.has_more and page.first_id == page.data[0].id  # type: ignore[attr-defined]
    assert page.last_id == page.data[1].id
    second, fifth = asc[1].id, asc[4].id
    assert second is not None and fifth is not None
    last = await oa.conversations.items.list(conv.id, order="asc", after=fifth, limit=5)
    assert [i.id for i in last.data] == [asc[5].id, asc[6].id] and not last.has_more

    # the items are the session's messages, ids stable through the native API
    sid = uuid.UUID(conv.id.removeprefix("conv_"))
    native = (await client.get(f"{in_app.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()
    assert [f"msg_{uuid.UUID(m['id']).hex}" for m in native["data"]] == [i.id for i in asc]
    assert [m["role"] for m in native["data"][:3]] == ["user", "assistant", "user"]

    one = await oa.conversations.items.retrieve(second, conversation_id=conv.id)
    assert one.role == "assistant" and _text(one) == "second"  # type: ignore[union-attr]
    after_delete = await oa.conversations.items.delete(second, conversation_id=conv.id)
    assert after_delete.id == conv.id
    remaining = [i.id async for i in oa.conversations.items.list(conv.id, order="asc")]
    assert remaining == [i.id for i in asc if i.id != asc[1].id]
    with pytest.raises(openai.NotFoundError):
        await oa.conversations.items.retrieve(second, conversation_id=conv.id)

    # GET /v1/conversations (beyond OpenAI): the user's conversations, most recently active first, by cursor
    other = await oa.conversations.create()
    listed = (await client.get(f"{in_app.url}/v1/conversations?limit=1", headers=auth(key))).json()
    assert [c["id"] for c in listed["data"]] == [other.id] and listed["has_more"]
    rest = (await client.get(f"{in_app.url}/v1/conversations?limit=5&after={other.id}",
                             headers=auth(key))).json()
    assert [c["id"] for c in rest["data"]] == [conv.id] and not rest["has_more"]

    deleted = await oa.conversations.delete(conv.id)
    assert deleted.deleted and deleted.id == conv.id
    with pytest.raises(openai.NotFoundError):
        await oa.conversations.retrieve(conv.id)
    assert await _sessions(in_app.db, row.tenant_id, row.user_id) == (1, 0)


async def test_conversation_errors_openai_shape_nothing_written(in_app: InProcess) -> None:
    client = in_app.client
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    conv = await oa.conversations.create(items=[{"role": "user", "content": "mine"}])
    before = await _sessions(in_app.db, row.tenant_id, row.user_id)

    other_key, _ = await make_key(in_app.db)
    thief = openai_client(in_app.url, other_key, in_app.transport)
    for call in (thief.conversations.retrieve(conv.id), thief.conversations.delete(conv.id),
                 thief.conversations.update(conv.id, metadata={"a": "b"}),
                 thief.conversations.items.list(conv.id),
                 thief.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}]),
                 oa.conversations.retrieve("conv_" + uuid.uuid4().hex), oa.conversations.retrieve("nonsense")):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert caught.value.status_code == 404
        err = caught.value.body
        assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err)

    bad_items = [
        [{"type": "function_call", "name": "f", "arguments": "{}"}],  # no call_id
        [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}],  # no Files API
        [{"role": "robot", "content": "hi"}],
        [{"role": "user", "content": f"m{i}"} for i in range(21)],
    ]
    for items in bad_items:
        with pytest.raises(openai.BadRequestError) as bad:
            await oa.conversations.create(items=items)  # type: ignore[arg-type]
        assert bad.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            await oa.conversations.items.create(conv.id, items=items)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await oa.conversations.create(metadata={"k": 1})  # type: ignore[dict-item]
    r = await client.post(f"{in_app.url}/v1/conversations", content=b"{not json", headers=auth(key))
    assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "param", "code"}
    assert await _sessions(in_app.db, row.tenant_id, row.user_id) == before
