"""ScriptedProvider scripts tool calls; the stream layer of today passes them by (text only) unharmed."""

from __future__ import annotations

import asyncio

import pytest

from mofa_sdk.errors import ConfigError, StreamInterruptedError
from mofa_sdk.llm import (
    ChatMessage,
    ChatParams,
    Finish,
    LLMAgentBuilder,
    ProviderEvent,
    ScriptedProvider,
    StreamStarted,
    TextDelta,
    ToolCall,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReport,
)

A = ToolCall("call_a", "get_weather", '{"city": "Paris", "days": 3}')
B = ToolCall("call_b", "get_time", "{}")
USER = [ChatMessage("user", "hi")]


async def play(provider: ScriptedProvider, stream: bool = True) -> list[ProviderEvent]:
    return [e async for e in provider.stream(USER, ChatParams(model="m", stream=stream))]


async def test_a_reply_of_tool_calls_streams_them_in_pieces() -> None:
    events = await play(ScriptedProvider([["Checking. ", A, B]], tool_call_pieces=4))
    assert events[0] == StreamStarted("scripted-0") and events[1] == TextDelta("Checking. ")
    assert events[2] == ToolCallStarted(0, "call_a", "get_weather")
    pieces = [e.text for e in events if isinstance(e, ToolCallArgumentsDelta) and e.index == 0]
    assert len(pieces) == 4 and "".join(pieces) == A.arguments
    assert [e for e in events if isinstance(e, ToolCallFinished)] == [ToolCallFinished(0, A), ToolCallFinished(1, B)]
    assert isinstance(events[-2], UsageReport) and events[-1] == Finish("tool_calls", "scripted-0")


async def test_non_streamed_calls_come_whole() -> None:
    events = await play(ScriptedProvider([[A]]), stream=False)
    assert [e for e in events if isinstance(e, ToolCallArgumentsDelta)] == [ToolCallArgumentsDelta(0, A.arguments)]
    assert not [e for e in events if isinstance(e, TextDelta)]


async def test_a_failure_mid_arguments_leaves_a_partial_call() -> None:
    provider = ScriptedProvider([[A]], tool_call_pieces=3, fail=StreamInterruptedError("cut"), fail_after=2)
    events: list[ProviderEvent] = []
    with pytest.raises(StreamInterruptedError):
        async for event in provider.stream(USER, ChatParams(model="m")):
            events.append(event)
    assert [type(e) for e in events] == [StreamStarted, ToolCallStarted, ToolCallArgumentsDelta]
    assert not [e for e in events if isinstance(e, ToolCallFinished)]


def test_a_reply_holding_something_else_is_refused() -> None:
    with pytest.raises(ConfigError, match="text deltas and ToolCalls, not dict"):
        ScriptedProvider([[{"id": "x"}]])  # type: ignore[list-item]


async def test_an_agent_without_that_tool_answers_the_call_with_an_error() -> None:
    # (the stream layer of before passed the calls by; now every call of a windowed turn is answered)
    provider = ScriptedProvider([["Let me check.", A], "Done."])
    agent = LLMAgentBuilder().with_provider(provider).build()
    assert await asyncio.wait_for(agent.chat("weather?"), 5) == "Done."
    tool_message = provider.requests[1][0][-1]
    assert tool_message.role == "tool" and tool_message.is_error
    assert "no tool named 'get_weather'" in tool_message.content
    assert await agent.chat("and now?") == "Done."
