"""``search_messages``: full-text search over message content, tenant- and user-scoped, on every store."""

from __future__ import annotations

import uuid

import pytest

from mofa_sdk.entities import Message, MessageRole, Session
from mofa_sdk.errors import ValidationError
from mofa_sdk.persistence import Store


async def _session(store: Store, tenant: uuid.UUID, user: uuid.UUID, *texts: str) -> Session:
    s = await store.create_session(Session(tenant_id=tenant, user_id=user))
    for i, text in enumerate(texts):
        role: MessageRole = "user" if i % 2 == 0 else "assistant"
        await store.save_message(Message(session_id=s.id, tenant_id=tenant, user_id=user, role=role, content=text))
    return s


async def test_words_match_whole_and_in_any_case(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    a = await _session(store, tenant, user, "The Pirate ship sailed at dawn.", "Arr, a fine ship.")
    b = await _session(store, tenant, user, "Tell me about pirates", "Pirates sail ships.")
    found = await store.search_messages(tenant, user, "pirate SHIP")
    assert [(m.session_id, m.content) for m in found] == [(a.id, "The Pirate ship sailed at dawn.")]
    assert {m.session_id for m in await store.search_messages(tenant, user, "pirates")} == {b.id}
    ships = await store.search_messages(tenant, user, "ship")
    assert [m.content for m in ships] == ["Arr, a fine ship.", "The Pirate ship sailed at dawn."]  # newest first
    assert len(await store.search_messages(tenant, user, "ship", limit=1)) == 1
    # search syntax is not interpreted: quotes, operators and stars are just separators
    assert [m.content for m in await store.search_messages(tenant, user, '"fine" * ship-')] == [
        "Arr, a fine ship."
    ]
    assert await store.search_messages(tenant, user, "submarine") == []


async def test_search_is_tenant_and_user_scoped(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    await _session(store, tenant, uuid.uuid4(), "secret treasure of another user")
    await _session(store, uuid.uuid4(), user, "secret treasure of another tenant")
    mine = await _session(store, tenant, user, "my own treasure")
    assert [m.session_id for m in await store.search_messages(tenant, user, "treasure")] == [mine.id]


async def test_edits_and_deletes_reach_the_index(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user, "first words")
    [m] = await store.get_session_messages(tenant, s.id)
    await store.update_message(tenant, m.id, content="second words")
    assert await store.search_messages(tenant, user, "first") == []
    assert [x.id for x in await store.search_messages(tenant, user, "second")] == [m.id]
    await store.delete_session(tenant, s.id)
    assert await store.search_messages(tenant, user, "second") == []


@pytest.mark.parametrize("bad", ["", "   ", "***", '""'])
async def test_a_search_needs_a_word(store: Store, tenant: uuid.UUID, user: uuid.UUID, bad: str) -> None:
    with pytest.raises(ValidationError):
        await store.search_messages(tenant, user, bad)
