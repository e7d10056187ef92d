"""What goes in comes out, exactly, on every store: NULs, emoji, right-to-left text, big rows, any text."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import Agent, LLMApiCall, Message, Provider, Session
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


# JSON as json.loads returns it: every finite float (-0.0, 1e300, 5e-324 included) and integers far past 64
# bits. Exactness is checked on the JSON text (exact() below), which == alone would not see.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
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
    exact(got.metadata, metadata)


def exact(got: Any, want: Any) -> None:
    """The same JSON value: == plus what it ignores (-0.0 vs 0.0, 1.0 vs 1, key order)."""
    assert json.dumps(got) == json.dumps(want)


NUMBERS: dict[str, Any] = {
    "huge": 1.5e300,
    "integral float": 1e20,
    "negative zero": -0.0,
    "tiny": 5e-324,
    "largest": 1.7976931348623157e308,
    "one as float": 1.0,
    "big int": 2**200,
    "negative big int": -(10**30) - 7,
    "third": 1 / 3,
    "nested": [{"x": -0.0, "y": [1e-300, 123456789.125]}],
}


async def test_json_numbers_and_key_order_round_trip_exactly_everywhere(store: Store) -> None:
    """PostgreSQL's jsonb gave 1.5e300 back as a different integer, 1e20 as an int and -0.0 as 0.0, and
    sorted the keys; its JSON columns now keep the text as written (migration 0006)."""
    s = await new_session(store)
    unordered = {"zebra": 1, "apple": 2, "mango": {"b": 1, "a": 2}}
    m = await store.save_message(msg(s, "numbers", {**NUMBERS, **unordered}))
    got = await store.get_message(s.tenant_id, m.id)
    exact(got.metadata, {**NUMBERS, **unordered})
    assert list(got.metadata)[-3:] == ["zebra", "apple", "mango"]
    await store.update_message(s.tenant_id, m.id, metadata={"after update": NUMBERS})
    exact((await store.get_message(s.tenant_id, m.id)).metadata, {"after update": NUMBERS})
    # the NUL-escaped path (a row with U+0000 is rewritten as a whole) keeps numbers exact too
    await store.update_message(s.tenant_id, m.id, metadata={"nul\x00": NUMBERS})
    exact((await store.get_message(s.tenant_id, m.id)).metadata, {"nul\x00": NUMBERS})
    await store.update_session(s.tenant_id, s.id, metadata=NUMBERS)
    exact((await store.get_session(s.tenant_id, s.id)).metadata, NUMBERS)
    fresh = await store.create_session(Session(tenant_id=s.tenant_id, user_id=s.user_id, metadata=NUMBERS))
    exact((await store.get_session(s.tenant_id, fresh.id)).metadata, NUMBERS)


async def test_json_columns_of_agents_and_calls_keep_numbers(store: Store) -> None:
    t = uuid.uuid4()
    p = await store.create_provider(Provider(tenant_id=t, provider_name="p", provider_type="openai"))
    a = await store.create_agent(
        Agent(tenant_id=t, agent_code="c", agent_name="n", model_name="m", provider_id=p.id,
              custom_params={"top_p": 1e-05, "seed": 1e20}, thinking={"budget": -0.0},
              response_format={"schema": NUMBERS})
    )  # fmt: skip
    got = await store.get_agent(t, a.id)
    exact([got.custom_params, got.thinking, got.response_format], [a.custom_params, a.thinking, a.response_format])
    s = await store.create_session(Session(tenant_id=t, user_id=t))
    c = LLMApiCall(tenant_id=t, session_id=s.id, user_id=t, model_name="m", status="success",
                   prompt_tokens_details={"cached": 1e20}, price_details={"unit": 1.5e300, "z": -0.0})  # fmt: skip
    await store.save_api_call(c)
    got_c = await store.get_api_call(t, c.id)
    exact([got_c.prompt_tokens_details, got_c.price_details], [c.prompt_tokens_details, c.price_details])


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize("depth", [101, 1_000, 100_000])
async def test_metadata_nested_too_deep_is_refused_before_writing(store: Store, depth: int) -> None:
    """Nested 1,000 deep, metadata raised a RecursionError; now a ValidationError names the limit, on
    every path into every store, and nothing is written. 100 levels are kept."""
    s = await new_session(store)
    kept = await store.save_message(msg(s, "ok", nested(100)))
    exact((await store.get_message(s.tenant_id, kept.id)).metadata, nested(100))
    deep = nested(depth)
    with pytest.raises(ValidationError, match="nested deeper than 100 levels"):
        await store.save_message(msg(s, "x", deep))
    with pytest.raises(ValidationError, match="nested deeper than 100"):
        await store.update_message(s.tenant_id, kept.id, metadata=deep)
    with pytest.raises(ValidationError, match="nested deeper than 100"):
        await store.update_session(s.tenant_id, s.id, metadata=deep)
    with pytest.raises(ValidationError, match="nested deeper than 100"):
        Session(tenant_id=s.tenant_id, user_id=s.user_id, metadata={"list": [deep]})
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(ValidationError, match="contains itself"):
        await store.update_session(s.tenant_id, s.id, metadata=looped)
    assert [m.id for m in await store.get_session_messages(s.tenant_id, s.id)] == [kept.id]
    assert (await store.get_message(s.tenant_id, kept.id)).metadata == nested(100)
    assert (await store.get_session(s.tenant_id, s.id)).metadata == {}


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
