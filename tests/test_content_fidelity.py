"""What goes in comes out, exactly, on every store: NULs, emoji, right-to-left text, big rows, any text."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import Message, Session
from mofa_sdk.errors import ValidationError

Store = Any

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


async def new_session(store: Store) -> Session:
    return await store.create_session(Session(tenant_id=uuid.uuid4(), user_id=uuid.uuid4()))  # type: ignore[no-any-return]


def msg(s: Session, content: str, metadata: dict[str, Any] | None = None) -> Message:
    return Message(
        session_id=s.id,
        tenant_id=s.tenant_id,
        user_id=s.user_id,
        role="user",
        content=content,
        metadata=metadata or {},
    )


async def round_trip(store: Store, content: str, metadata: dict[str, Any]) -> Message:
    s = await new_session(store)
    m = await store.save_message(msg(s, content, metadata))
    got = await store.get_message(s.tenant_id, m.id)
    assert got is not None
    (listed,) = await store.get_session_messages(s.tenant_id, s.id)
    assert listed.content == got.content and listed.metadata == got.metadata
    return got  # type: ignore[no-any-return]


TRICKY = [
    "a\x00b",
    "\x00",
    "\x00\x00 trailing\x00",
    "back\\slash",
    "\\0 is not a NUL",
    "\\\x00\\",
    "\\\\0\x00\\0",
    "emoji 😀👩‍👩‍👧‍👦 and flags 🇫🇷",
    "עברית ومرحبا بالعالم mixed with LTR",
    "\u202eright-to-left override\u202c",
    "zero\u200bwidth and combining e\u0301",
    "line\r\nbreaks\n\ttabs",
    "",
    "'; DROP TABLE entity_message; --",
]


@pytest.mark.parametrize("content", TRICKY)
async def test_tricky_content_round_trips(store: Store, content: str) -> None:
    got = await round_trip(store, content, {})
    assert got.content == content


async def test_tricky_metadata_round_trips(store: Store) -> None:
    metadata = {
        "nul\x00key": "nul\x00value",
        "back\\slash": ["\\0", "\\\x00", "\x00\\"],
        "emoji😀": {"rtl": "مرحبا", "nested": [{"x": "\x00"}]},
        "plain": [1, -2.5, True, False, None, ""],
    }
    got = await round_trip(store, "with metadata \x00\\", metadata)
    assert got.metadata == metadata
    assert got.content == "with metadata \x00\\"


async def test_update_keeps_tricky_values(store: Store) -> None:
    s = await new_session(store)
    m = await store.save_message(msg(s, "plain"))
    await store.update_message(
        s.tenant_id, m.id, content="now \x00 with \\0 NUL", metadata={"k\x00": "\\\x00"}
    )
    got = await store.get_message(s.tenant_id, m.id)
    assert (got.content, got.metadata) == ("now \x00 with \\0 NUL", {"k\x00": "\\\x00"})
    await store.update_message(s.tenant_id, m.id, content="back to plain \\0", metadata={"k": "v"})
    got = await store.get_message(s.tenant_id, m.id)
    assert (got.content, got.metadata) == ("back to plain \\0", {"k": "v"})


async def test_one_megabyte_message(store: Store) -> None:
    content = ("0123456789abcdef" * 65_536)[:1_048_570] + "😀\x00end"
    got = await round_trip(store, content, {"size": len(content)})
    assert got.content == content
    assert len(got.content) == len(content)


async def test_lone_surrogate_is_refused_before_writing(store: Store) -> None:
    s = await new_session(store)
    with pytest.raises(ValidationError, match="content"):
        await store.save_message(msg(s, "broken \ud800 text"))
    with pytest.raises(ValidationError):
        await store.save_message(msg(s, "ok", {"key": "\udfff"}))
    assert await store.count_session_messages(s.tenant_id, s.id) == 0
    assert (await store.save_message(msg(s, "fine"))).seq == 1


@pytest.mark.parametrize(
    "metadata",
    [
        {"set": {1, 2}},
        {"bytes": b"x"},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {1: "int key"},
        {"t": (1, 2)},
    ],
)
async def test_non_json_metadata_is_refused(store: Store, metadata: dict[Any, Any]) -> None:
    s = await new_session(store)
    with pytest.raises(ValidationError, match="metadata"):
        await store.save_message(msg(s, "x", metadata))
    m = await store.save_message(msg(s, "x"))
    with pytest.raises(ValidationError, match="metadata"):
        await store.update_message(s.tenant_id, m.id, metadata=metadata)
    got = await store.get_message(s.tenant_id, m.id)
    assert got.metadata == {}
    assert await store.count_session_messages(s.tenant_id, s.id) == 1


# JSON as json.loads returns it. Floats stay within ±1e15 so every store's JSON type (jsonb keeps numbers as
# decimals) gives the same float back.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@SETTINGS
@given(content=st.text(), metadata=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
async def test_any_text_and_json_round_trip(store: Store, content: str, metadata: dict[str, Any]) -> None:
    got = await round_trip(store, content, metadata)
    assert got.content == content
    assert got.metadata == metadata


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 12), offset=st.integers(0, 15), limit=st.integers(1, 15), k=st.integers(0, 15))
async def test_pagination_matches_slicing(store: Store, n: int, offset: int, limit: int, k: int) -> None:
    s = await new_session(store)
    await store.save_messages([msg(s, f"m{i}") for i in range(n)])
    everything = [m.content for m in await store.get_session_messages(s.tenant_id, s.id)]
    assert everything == [f"m{i}" for i in range(n)]
    page = await store.get_session_messages_paginated(s.tenant_id, s.id, offset, limit)
    assert [m.content for m in page] == everything[offset : offset + limit]
    last = await store.get_last_messages(s.tenant_id, s.id, k)
    assert [m.content for m in last] == (everything[-k:] if k else [])
