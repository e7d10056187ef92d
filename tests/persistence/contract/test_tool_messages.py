"""Messages with tools: an assistant's tool calls, a tool message's result, a user message's input parts
(migration 0009). Part of the store contract: every test runs on each store of the ``store`` fixture.
"""

# mypy: disable-error-code="union-attr"

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest

from mofa_sdk.entities import Message, MessagePart, MessageToolCall
from mofa_sdk.errors import ValidationError
from mofa_sdk.llm import ChatMessage, ImagePart, TextPart, ToolCall
from mofa_sdk.persistence import Store
from mofa_sdk.persistence._chat_rows import chat_message, message_row
from tests.support.builders import msg, new_session, same

# arguments as a model writes them: spacing, key order, escapes and numbers kept verbatim
ARGS = '{"city":  "Zürich", "b": 1e20, "a": -0.0, "s": "\\u00e9\\n\\"q\\"", "nul": "\\u0000"}'
DATA_URL = "data:image/png;base64," + "iVBORw0KGgo=" * 50


async def test_tool_fields_round_trip_exactly(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    question = msg(s, "What is in this picture?\nAnd the weather?", parts=[
        MessagePart(type="text", text="What is in this picture?"),
        MessagePart(type="image", url=DATA_URL, detail="low"),
        MessagePart(type="image", url="https://example.com/a.png?x=1&y=2"),
        MessagePart(type="text", text="And the weather?"),
    ])  # fmt: skip
    calls = msg(s, "", role="assistant", tool_calls=[
        MessageToolCall(id="call_1", name="weather", arguments=ARGS),
        MessageToolCall(id="call_2", name="cut", arguments='{"partial": "ab'),  # cut mid-stream: kept
    ])  # fmt: skip
    ok = msg(s, "12 °C, \x00 sunny", role="tool", tool_call_id="call_1")
    failed = msg(s, "ValueError: no", role="tool", tool_call_id="call_2", is_error=True)
    saved = await store.save_messages([question, calls, ok, failed])
    for before, after in zip([question, calls, ok, failed], saved, strict=True):
        got = await store.get_message(tenant, before.id)
        same(got, after)
        same(got, before, "seq")
    assert [m.tool_calls for m in await store.get_session_messages(tenant, s.id)][1][0].arguments == ARGS
    last = await store.get_last_messages(tenant, s.id, 4)
    assert [(m.tool_call_id, m.is_error) for m in last] == [(None, False), (None, False), ("call_1", False),
                                                           ("call_2", True)]  # fmt: skip
    assert last[0].parts == question.parts and last[1].tool_calls == calls.tool_calls


async def test_a_text_message_has_no_tool_fields(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s, "plain"))
    got = await store.get_message(tenant, m.id)
    assert (got.tool_calls, got.tool_call_id, got.is_error, got.parts) == ([], None, False, [])


async def test_the_llm_types_survive_a_stored_row(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    sent = [
        ChatMessage("user", "", parts=(TextPart("look"), ImagePart(DATA_URL, "high"))),
        ChatMessage("assistant", "let me see", tool_calls=(ToolCall("c1", "look", ARGS), ToolCall("c2", "x"))),
        ChatMessage("tool", "a cat", tool_call_id="c1"),
        ChatMessage("tool", "boom", tool_call_id="c2", is_error=True),
        ChatMessage("assistant", "A cat."),
    ]
    rows = await store.save_messages(
        [message_row(m, session_id=s.id, tenant_id=tenant, user_id=user) for m in sent]
    )
    back = [chat_message(r) for r in await store.get_session_messages(tenant, s.id)]
    assert [dataclasses.replace(m, id=None) for m in back] == sent
    assert [m.id for m in back] == [r.id for r in rows]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"role": "user", "tool_calls": [MessageToolCall(id="c", name="f")]}, "only an assistant"),
        ({"role": "assistant", "tool_calls": [MessageToolCall(id="c", name="f"), MessageToolCall(id="c", name="g")]},
         "must differ"),
        ({"role": "assistant", "tool_call_id": "c"}, "belong to a tool message"),
        ({"role": "user", "is_error": True}, "belong to a tool message"),
        ({"role": "tool", "tool_call_id": ""}, "tool_call_id"),
        ({"role": "tool", "tool_call_id": "c\x00"}, "NUL"),
        ({"role": "assistant", "parts": [MessagePart(type="text", text="hi")]}, "only a user message"),
        ({"role": "user", "content": "other", "parts": [MessagePart(type="text", text="hi")]}, "joined by newlines"),
    ],
)
def test_bad_tool_fields_are_refused(fields: dict[str, Any], error: str) -> None:
    base: dict[str, Any] = {"session_id": uuid.uuid4(), "tenant_id": uuid.uuid4(), "user_id": uuid.uuid4(),
                               "content": "hi"}  # fmt: skip
    with pytest.raises(ValidationError, match=error):
        Message(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"type": "text"}, "a text part has text"),
        ({"type": "text", "text": "a", "url": "https://x"}, "a text part has text"),
        ({"type": "image", "url": "file:///etc/passwd"}, "http"),
        ({"type": "image", "text": "a", "url": "https://x"}, "an image part has a url"),
        ({"type": "image", "url": "https://x", "detail": "huge"}, "detail"),
        ({"type": "video", "url": "https://x"}, "type"),
    ],
)
def test_bad_parts_are_refused(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        MessagePart(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "error"), [({"id": "", "name": "f"}, "id"), ({"id": "c", "name": ""}, "name"),
                                              ({"id": "c", "name": "f\x00"}, "NUL")])  # fmt: skip
def test_bad_tool_calls_are_refused(fields: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        MessageToolCall(**fields)


def test_parts_are_stored_without_nulls() -> None:
    part = MessagePart(type="image", url="https://x/a.png")
    assert part.model_dump(mode="json") == {"type": "image", "url": "https://x/a.png"}
    assert json.loads(MessagePart(type="text", text="t").model_dump_json()) == {"type": "text", "text": "t"}
