"""OpenAICompatibleProvider with tools, through real HTTP and the openai SDK against the fault server: the
request carries tools and a tool-call history in OpenAI's format, streamed calls come back as events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import pytest

from mofa_sdk.errors import ConfigError, MalformedResponseError, StreamInterruptedError
from mofa_sdk.llm import (
    ChatMessage,
    ChatParams,
    Finish,
    ImagePart,
    ProviderEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallAccumulator,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolResult,
    ToolSpec,
    UsageReport,
    tool,
)
from mofa_sdk.llm._openai import OpenAICompatibleProvider
from tests.support.fault_server import FaultServer, Reply, ScriptedCall


def get_weather(city: str, days: int = 1) -> str:
    """Get the weather forecast.

    Args:
        city: The city.
        days: Days ahead.
    """
    return f"sunny in {city}"


WEATHER = tool(get_weather)
ARGS_A = json.dumps({"city": "Paris", "days": 3, "note": "a long-ish text so that it splits " * 3})
ARGS_B = json.dumps({"city": "Oslo"})
CALLS = [ScriptedCall("call_a", "get_weather", ARGS_A, pieces=17), ScriptedCall("call_b", "get_weather", ARGS_B, 5)]


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


def make(server: FaultServer) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(base_url=server.base_url, api_key="k", default_model="m", read_timeout=5.0)


async def collect(
    provider: OpenAICompatibleProvider, messages: Sequence[ChatMessage], params: ChatParams
) -> list[ProviderEvent]:
    return [e async for e in provider.stream(messages, params)]


async def test_streamed_parallel_calls_arrive_whole_in_index_order(server: FaultServer) -> None:
    server.push(Reply(chunks=["Let me look. "], tool_calls=CALLS, finish_reason="tool_calls"))
    provider = make(server)
    events = await collect(provider, [ChatMessage("user", "weather?")],
                           ChatParams(model="m", tools=(WEATHER,), tool_choice="auto", parallel_tool_calls=True))
    await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me look. "
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert started == [ToolCallStarted(0, "call_a", "get_weather"), ToolCallStarted(1, "call_b", "get_weather")]
    deltas = [e for e in events if isinstance(e, ToolCallArgumentsDelta)]
    assert len(deltas) > 17  # the arguments arrived in many pieces …
    assert "".join(d.text for d in deltas if d.index == 0) == ARGS_A  # … and were joined
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert [f.call for f in finished] == [ToolCall("call_a", "get_weather", ARGS_A),
                                          ToolCall("call_b", "get_weather", ARGS_B)]
    # the calls come complete before usage and the finish, whose reason passes through
    assert isinstance(events[-2], UsageReport) and events[-1] == Finish("tool_calls", "chatcmpl-fault")
    assert events.index(finished[-1]) < len(events) - 2
    body = server.requests[0].body
    assert body["tools"] == [WEATHER.openai_schema()]
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"] == {"description": "The city.",
                                                                               "type": "string"}
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True


async def test_non_streamed_calls_give_the_same_events(server: FaultServer) -> None:
    server.push(Reply(chunks=[], tool_calls=CALLS, finish_reason="tool_calls"))
    provider = make(server)
    events = await collect(provider, [ChatMessage("user", "weather?")],
                           ChatParams(model="m", tools=(WEATHER,), stream=False, tool_choice="get_weather"))
    await provider.aclose()
    assert not [e for e in events if isinstance(e, TextDelta)]
    assert [e.call for e in events if isinstance(e, ToolCallFinished)] == [
        ToolCall("call_a", "get_weather", ARGS_A), ToolCall("call_b", "get_weather", ARGS_B)]
    assert events[-1] == Finish("tool_calls", "chatcmpl-fault")
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in body


async def test_a_stream_cut_mid_arguments_raises_and_the_events_hold_the_partial_call(server: FaultServer) -> None:
    server.push(Reply(chunks=[], tool_calls=CALLS, tool_cut_after=8, finish_reason="tool_calls"))
    provider = make(server)
    events: list[ProviderEvent] = []
    with pytest.raises(StreamInterruptedError):
        async for event in provider.stream([ChatMessage("user", "weather?")], ChatParams(model="m",
                                                                                        tools=(WEATHER,))):
            events.append(event)
    await provider.aclose()
    assert not [e for e in events if isinstance(e, ToolCallFinished)]
    acc = ToolCallAccumulator()
    for event in events:
        if isinstance(event, ToolCallStarted):
            acc.feed(event.index, event.id, event.name)
        elif isinstance(event, ToolCallArgumentsDelta):
            acc.feed(event.index, arguments=event.text)
    [partial] = acc.calls()
    assert partial.id == "call_a" and ARGS_A.startswith(partial.arguments) and partial.arguments != ARGS_A
    assert not partial.arguments_valid


async def test_tool_history_and_image_parts_are_sent_in_openai_format(server: FaultServer) -> None:
    history = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "", parts=(TextPart("What city is this?"),
                                       ImagePart("data:image/png;base64,iVBORw0KGgo=", detail="low"))),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_a", "get_weather", ARGS_B),)),
        ChatMessage.for_tool_result(ToolResult("call_a", "error: service down", is_error=True)),
        ChatMessage("assistant", "Oslo; no forecast."),
        ChatMessage("user", "thanks"),
    ]
    provider = make(server)
    events = await collect(provider, history, ChatParams(model="m"))
    await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "tok0 tok1 tok2 "
    body = server.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What city is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ARGS_B}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "error: service down"},
        {"role": "assistant", "content": "Oslo; no forecast."},
        {"role": "user", "content": "thanks"},
    ]
    assert "tools" not in body and "tool_choice" not in body


async def test_a_streamed_call_without_a_name_is_a_malformed_response(server: FaultServer) -> None:
    server.push(Reply(chunks=[], tool_calls=[ScriptedCall("call_x", "", "{}")], finish_reason="tool_calls"))
    provider = make(server)
    with pytest.raises(MalformedResponseError, match=r"index \[0\] came without a function name"):
        await collect(provider, [ChatMessage("user", "x")], ChatParams(model="m", tools=(WEATHER,)))
    await provider.aclose()


def test_chat_params_check_their_tool_options() -> None:
    spec = ToolSpec("lookup", "", {"type": "object", "properties": {}})
    assert ChatParams(model="m", tools=[spec, WEATHER]).tools == (spec, WEATHER)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="same name"):
        ChatParams(model="m", tools=(WEATHER, WEATHER))
    with pytest.raises(ConfigError, match="got 'nope'"):
        ChatParams(model="m", tools=(WEATHER,), tool_choice="nope")
    with pytest.raises(ConfigError, match="needs tools"):
        ChatParams(model="m", tool_choice="required")
    with pytest.raises(ConfigError, match="sequence of Tool or ToolSpec"):
        ChatParams(model="m", tools=({"type": "function"},))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="type 'object'"):
        ToolSpec("x", "", {"type": "string"})
