"""The message model beside text: tool calls, tool results, input parts, and the sequence rules."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from mofa_sdk.errors import ToolArgumentsError, ValidationError
from mofa_sdk.llm import (
    ChatMessage,
    ImagePart,
    TextPart,
    ToolCall,
    ToolResult,
    check_tool_sequence,
)
from mofa_sdk.llm._boundary import check_request
from mofa_sdk.llm._messages import parts_from_json, parts_to_json, tool_calls_from_json, tool_calls_to_json
from mofa_sdk.llm._tokens import message_tokens

CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')


def test_text_only_messages_work_as_before() -> None:
    message = ChatMessage(role="user", content="hi")
    assert (message.tool_calls, message.tool_call_id, message.is_error, message.parts) == ((), None, False, ())
    assert message.tool_result is None
    assert ChatMessage("assistant", "", status="cancelled").content == ""  # a cut reply is still a message
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.content = "x"  # type: ignore[misc]
    assert not hasattr(message, "__dict__")  # slotted


def test_assistant_message_with_tool_calls_stores_a_tuple() -> None:
    calls = [CALL, ToolCall("call_2", "get_time", "{}")]
    message = ChatMessage("assistant", "", tool_calls=calls)  # type: ignore[arg-type]
    assert message.tool_calls == tuple(calls)
    assert hash(message.tool_calls)


def test_tool_message_round_trips_its_result() -> None:
    result = ToolResult("call_1", "boom", is_error=True)
    message = ChatMessage.for_tool_result(result, id=uuid.UUID(int=1))
    assert (message.role, message.content, message.tool_call_id, message.is_error) == ("tool", "boom", "call_1", True)
    assert message.tool_result == result


def test_arguments_are_kept_verbatim_and_parsed_on_demand() -> None:
    raw = '{ "city" :"Paris",\n "days": 3 }'
    call = ToolCall("c", "f", raw)
    assert call.arguments == raw and call.arguments_valid
    assert call.parse_arguments() == {"city": "Paris", "days": 3}


@pytest.mark.parametrize("raw", ['{"city": "Par', "", "[1, 2]", "null", "{'a': 1}"])
def test_arguments_that_are_not_a_json_object_say_so(raw: str) -> None:
    call = ToolCall("c", "f", raw)
    assert not call.arguments_valid
    with pytest.raises(ToolArgumentsError, match=r"tool call 'c' \(f\)"):
        call.parse_arguments()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: ChatMessage("tool", "x"), "needs the tool_call_id"),
        (lambda: ChatMessage("tool", "x", tool_call_id=""), "must not be empty"),
        (lambda: ToolCall("c", "f", {"a": 1}), r"arguments of tool call 'c' \(f\) must be a str"),  # type: ignore[arg-type]
        (lambda: ToolCall("c", "", "{}"), "name of tool call 'c' must not be empty"),
        (lambda: ToolCall("", "f", "{}"), "ToolCall.id must not be empty"),
        (lambda: ChatMessage("user", "x", tool_calls=(CALL,)), "only an assistant message makes tool calls"),
        (lambda: ChatMessage("assistant", "", tool_calls=(CALL, CALL)), "ids must differ"),
        (lambda: ChatMessage("assistant", "", tool_calls=({"id": "c"},)), "holds a dict, not a ToolCall"),  # type: ignore[arg-type]
        (lambda: ChatMessage("assistant", "", tool_calls="abc"), "must be a sequence"),  # type: ignore[arg-type]
        (lambda: ChatMessage("user", "x", tool_call_id="c"), "belong to a tool message"),
        (lambda: ChatMessage("assistant", "x", is_error=True), "belong to a tool message"),
        (lambda: ChatMessage("assistant", "", parts=(TextPart("a"),)), "only a user message has input parts"),
        (lambda: ChatMessage("user", "other", parts=(TextPart("a"),)), "content must be the text of its"),
        (lambda: ImagePart("file:///etc/passwd"), "http"),
        (lambda: ImagePart("https://x/y.png", detail="max"), "detail"),  # type: ignore[arg-type]
        (lambda: ToolResult("c", "x", is_error="yes"), "is_error must be a bool"),  # type: ignore[arg-type]
        (lambda: ChatMessage("user", None), "content of a user message must be a str"),  # type: ignore[arg-type]
    ],
)
def test_bad_messages_are_refused_with_the_reason(make: Any, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        make()


def test_user_parts_keep_order_and_urls_as_given() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    parts: list[TextPart | ImagePart] = [
        TextPart("What is on"), ImagePart(data_url, detail="low"), TextPart("this picture?")
    ]
    message = ChatMessage("user", "", parts=parts)  # type: ignore[arg-type]
    assert message.parts == tuple(parts) and message.parts[1].url == data_url  # type: ignore[union-attr]
    assert message.content == "What is on\nthis picture?"
    assert ChatMessage("user", "What is on\nthis picture?", parts=tuple(parts)) == message


def test_check_request_covers_tool_calls_and_results() -> None:
    with pytest.raises(ValidationError, match="arguments of tool call 'c'"):
        check_request([ChatMessage("assistant", "", tool_calls=(ToolCall("c", "f", '{"a": "\udcff"}'),))])
    with pytest.raises(ValidationError, match="tool_call_id"):
        check_request([ChatMessage("tool", "ok", tool_call_id="c\ud800")])


def _valid() -> list[ChatMessage]:
    return [
        ChatMessage("user", "weather?"),
        ChatMessage("assistant", "", tool_calls=(CALL, ToolCall("call_2", "get_time", "{}"))),
        ChatMessage.for_tool_result(ToolResult("call_2", "noon")),
        ChatMessage.for_tool_result(ToolResult("call_1", "sunny")),
        ChatMessage("assistant", "Sunny at noon."),
    ]


def test_a_valid_tool_sequence_passes() -> None:
    check_tool_sequence(_valid())
    check_tool_sequence([ChatMessage("system", "s"), ChatMessage("user", "hi"), ChatMessage("assistant", "hello")])


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m[:3], r"'call_1' \(get_weather\) have no tool result before the end"),
        (lambda m: [*m[:3], m[4]], r"'call_1' \(get_weather\) have no tool result before request message 3"),
        (lambda m: [m[0], m[2]], "answers nothing"),
        (lambda m: [*m[:4], m[3], m[4]], "was answered already"),
        (lambda m: [*m, ChatMessage("assistant", "")], "neither text nor tool calls"),
        (lambda m: [*m, ChatMessage("assistant", "", tool_calls=(CALL,))], "used twice"),
    ],
)
def test_invalid_tool_sequences_are_named(edit: Any, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        check_tool_sequence(edit(_valid()))


def test_stored_json_round_trips_exactly() -> None:
    calls = (ToolCall("c1", "f", '{ "a" :1 }'), ToolCall("c2", "g", '{"cut": "mid'), ToolCall("c3", "h", "{}"))
    assert tool_calls_from_json(tool_calls_to_json(calls)) == calls
    parts = (TextPart("é ✓"), ImagePart("data:image/png;base64,AA==", detail="high"), ImagePart("https://x/y.png"))
    assert parts_from_json(parts_to_json(parts)) == parts
    assert tool_calls_from_json("[]") == () == parts_from_json("[]")


@pytest.mark.parametrize("text", ["nope", "{}", '[{"id": "c"}]', '[{"id": "c", "name": "f", "arguments": 1}]'])
def test_stored_tool_calls_that_are_not_what_was_written_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match=r"stored tool calls|arguments of tool call"):
        tool_calls_from_json(text)


@pytest.mark.parametrize("text", ['[{"type": "audio"}]', '[{"type": "image"}]', "[1]", '{"type": "text"}'])
def test_stored_parts_that_are_not_what_was_written_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="stored input parts"):
        parts_from_json(text)


def test_token_estimates_count_tool_calls_and_results() -> None:
    plain = message_tokens(ChatMessage("assistant", ""))
    call = ToolCall("c", "f", '{"x": "' + "y" * 400 + '"}')
    with_call = message_tokens(ChatMessage("assistant", "", tool_calls=(call,)))
    assert plain == 0 and with_call > 100
    result = ChatMessage("tool", "abcd", tool_call_id="call_123")
    assert message_tokens(result) > message_tokens(ChatMessage("user", "abcd"))
