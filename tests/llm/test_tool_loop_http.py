"""The agent's tool loop over real HTTP: the OpenAI-compatible provider against the fault server in its strict
mode (a 400 for an unanswered call or an orphan result, as OpenAI answers), so every request the loop sends,
and the next turn after any interruption, is checked as a strict provider would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mofa_sdk.errors import ProviderError
from mofa_sdk.llm import ChatMessage, ChatParams, LLMAgent, LLMAgentBuilder, ToolCall
from mofa_sdk.llm._openai import OpenAICompatibleProvider
from tests.support.fault_server import FaultServer, Reply, ScriptedCall


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer(strict_tools=True) as srv:
        yield srv


def agent_for(server: FaultServer, tools: list[Any]) -> LLMAgent:
    provider = OpenAICompatibleProvider(base_url=server.base_url, api_key="k", default_model="m", read_timeout=5.0)
    return LLMAgentBuilder().with_provider(provider).with_tools(tools).build()


def calls_reply(*calls: ScriptedCall, text: list[str] | None = None, **kw: Any) -> Reply:
    return Reply(chunks=text or [], tool_calls=list(calls), finish_reason="tool_calls", **kw)


def tool_messages(server: FaultServer, request: int) -> list[dict[str, Any]]:
    return [m for m in server.requests[request].body["messages"] if m["role"] == "tool"]


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_strict_mode_refuses_an_unanswered_call(server: FaultServer) -> None:
    # the check the other tests rely on: a request with an unanswered call is a 400 here
    provider = OpenAICompatibleProvider(base_url=server.base_url, api_key="k", default_model="m", read_timeout=5.0)
    messages = [ChatMessage("user", "hi"), ChatMessage("assistant", "", tool_calls=(ToolCall("x", "f"),)),
                ChatMessage("user", "again")]
    with pytest.raises(ProviderError, match="did not have response messages: x"):
        async for _ in provider.stream(messages, ChatParams(model="m")):
            pass
    await provider.aclose()


async def test_one_call_over_http(server: FaultServer) -> None:
    server.push(calls_reply(ScriptedCall("call_1", "get_weather", '{"city": "Paris"}'), text=["Checking. "]),
                Reply(chunks=["Sunny ", "in Paris."]))
    agent = agent_for(server, [get_weather])
    assert await agent.chat("weather?") == "Sunny in Paris."
    second = server.requests[1].body
    assert second["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert tool_messages(server, 1) == [{"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"}]
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather"]
    assert await agent.chat("and tomorrow?") == "tok0 tok1 tok2 "  # the whole history is valid


async def test_parallel_calls_over_http_run_concurrently(server: FaultServer) -> None:
    gates = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def meet(who: str) -> str:
        """Waits for the other."""
        gates[who].set()
        await gates["b" if who == "a" else "a"].wait()
        return f"met {who}"

    server.push(calls_reply(ScriptedCall("c_a", "meet", '{"who": "a"}'), ScriptedCall("c_b", "meet", '{"who": "b"}')),
                Reply(chunks=["both met"]))
    agent = agent_for(server, [meet])
    assert await asyncio.wait_for(agent.chat("go"), 10) == "both met"
    assert [m["tool_call_id"] for m in tool_messages(server, 1)] == ["c_a", "c_b"]


async def test_a_tool_that_raises_over_http(server: FaultServer) -> None:
    def explode() -> str:
        """Fails."""
        raise ValueError("boom")

    server.push(calls_reply(ScriptedCall("c", "explode", "{}")), Reply(chunks=["it failed"]))
    agent = agent_for(server, [explode])
    assert await agent.chat("go") == "it failed"
    assert "ValueError: boom" in tool_messages(server, 1)[0]["content"]


async def test_arguments_in_many_deltas_over_http(server: FaultServer) -> None:
    got: list[str] = []

    def echo(text: str) -> str:
        """Echo."""
        got.append(text)
        return "ok"

    long = "é" * 200 + "😀"
    server.push(calls_reply(ScriptedCall("c", "echo", json.dumps({"text": long}, ensure_ascii=False), pieces=80)),
                Reply(chunks=["done"]))
    agent = agent_for(server, [echo])
    assert await agent.chat("go") == "done"
    assert got == [long]


async def test_a_hanging_tool_cancelled_then_the_next_turn_is_valid(server: FaultServer) -> None:
    started = asyncio.Event()

    async def hang() -> str:
        """Hangs."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    server.push(calls_reply(ScriptedCall("c", "hang", "{}")))
    agent = agent_for(server, [hang])
    task = asyncio.create_task(agent.chat("go"))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await agent.chat("again") == "tok0 tok1 tok2 "
    answered = tool_messages(server, 1)
    assert answered[0]["tool_call_id"] == "c" and "cancelled" in answered[0]["content"]


async def test_a_call_cut_mid_arguments_runs_nothing(server: FaultServer) -> None:
    ran: list[str] = []

    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    server.push(calls_reply(ScriptedCall("c", "get_weather", '{"city": "Paris, France"}', pieces=6),
                            text=["Let me see. "], tool_cut_after=3))
    agent = agent_for(server, [get_weather])
    stream = agent.chat_stream("go")
    with pytest.raises(ProviderError):
        await stream.text_async()
    assert ran == [] and stream.text == "Let me see. " and stream.status == "error"
    assert await agent.chat("again") == "tok0 tok1 tok2 "
    assert len(server.requests) == 2 and not tool_messages(server, 1)
