"""The agent's tool loop with ScriptedProvider: model → tools (concurrently) → model … until a final reply; errors
become results the model sees; cancellation answers what was left open; the event stream is typed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mofa_sdk.errors import ConfigError, StreamInterruptedError, ToolRoundsExceededError
from mofa_sdk.llm import (
    ChatMessage,
    EventHandler,
    LLMAgent,
    LLMAgentBuilder,
    ScriptedProvider,
    StepFinished,
    TextDelta,
    ToolCall,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolResultEvent,
    ToolSpec,
    ToolStep,
    Turn,
    TurnResult,
    check_tool_sequence,
    tool,
)

WEATHER = ToolCall("call_w", "get_weather", '{"city": "Paris"}')


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def agent_with(provider: ScriptedProvider, tools: list[Any], **kw: Any) -> LLMAgent:
    builder = LLMAgentBuilder().with_provider(provider).with_tools(tools)
    if "rounds" in kw:
        builder = builder.with_max_tool_rounds(kw["rounds"])
    for handler in kw.get("handlers", ()):
        builder = builder.with_event_handler(handler)
    return builder.build()


class Recorder(EventHandler):
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
        self.log.append(("calls", step))

    async def on_tool_result(self, turn: Turn, message: ChatMessage) -> None:
        self.log.append(("result", message))

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        self.log.append(("reply", result))

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        self.log.append(("error", result))

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        self.log.append(("cancel", result))


async def test_one_call_runs_and_the_model_gets_its_result() -> None:
    provider = ScriptedProvider([["Let me look. ", WEATHER], "It is sunny."])
    rec = Recorder()
    agent = agent_with(provider, [get_weather], handlers=[rec])
    stream = agent.chat_stream("weather in Paris?")
    texts = [t async for t in stream]
    assert texts[0] == "Let me look. " and stream.text == "It is sunny." and stream.status == "complete"
    assert provider.requests[0][1].tools[0].name == "get_weather"  # the provider was told of the tool
    second = provider.requests[1][0]
    assert [m.role for m in second] == ["user", "assistant", "tool"]
    assert second[1].tool_calls == (WEATHER,) and second[1].content == "Let me look. "
    assert second[2].tool_call_id == "call_w" and second[2].content == "sunny in Paris" and not second[2].is_error
    assert [kind for kind, _ in rec.log] == ["calls", "result", "reply"]
    assert len(stream.steps) == 1 and stream.steps[0].result.finish_reason == "tool_calls"
    # the in-memory history holds the whole round, valid for the next request
    history = agent.history
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    check_tool_sequence(history)
    await agent.chat("and tomorrow?")
    check_tool_sequence(provider.requests[-1][0])


@pytest.mark.parametrize("choice", ["required", "get_weather"])
async def test_a_forced_tool_choice_holds_for_the_first_model_call_only(choice: str) -> None:
    provider = ScriptedProvider([[WEATHER], "It is sunny."])
    agent = LLMAgentBuilder().with_provider(provider).with_tools([get_weather]).with_tool_choice(choice).build()
    assert await agent.chat("weather in Paris?") == "It is sunny."
    assert [params.tool_choice for _, params in provider.requests] == [choice, "auto"]


async def test_tool_choice_auto_and_none_hold_for_every_call() -> None:
    provider = ScriptedProvider([[WEATHER], "It is sunny."])
    agent = LLMAgentBuilder().with_provider(provider).with_tools([get_weather]).with_tool_choice("auto").build()
    await agent.chat("weather in Paris?")
    assert [params.tool_choice for _, params in provider.requests] == ["auto", "auto"]
    with pytest.raises(ConfigError, match="tool_choice"):
        LLMAgentBuilder().with_tool_choice(3)  # type: ignore[arg-type]


async def test_the_calls_of_one_message_run_concurrently_and_results_go_in_call_order() -> None:
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def slow(n: int) -> str:
        """Waits for the other tool: only concurrent runs finish."""
        (first_started if n == 1 else second_started).set()
        await (second_started if n == 1 else first_started).wait()
        await asyncio.sleep(0.05 if n == 1 else 0)
        return f"done {n}"

    calls = [ToolCall("c1", "slow", '{"n": 1}'), ToolCall("c2", "slow", '{"n": 2}')]
    provider = ScriptedProvider([calls, "both done"])
    agent = agent_with(provider, [slow])
    events = [e async for e in agent.chat_stream("go").events()]
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert [r.call.id for r in results] == ["c2", "c1"]  # as they arrived
    assert [m.tool_call_id for m in provider.requests[1][0][2:]] == ["c1", "c2"]  # the request: call order


async def test_a_sync_tool_runs_in_a_thread() -> None:
    import threading

    main = threading.get_ident()
    seen: list[int] = []

    def where() -> str:
        """Which thread."""
        seen.append(threading.get_ident())
        return "ok"

    agent = agent_with(ScriptedProvider([[ToolCall("c", "where", "{}")], "fine"]), [where])
    assert await agent.chat("x") == "fine"
    assert seen and seen[0] != main


async def test_a_tool_that_raises_and_bad_arguments_become_error_results_the_model_sees() -> None:
    def broken(x: int) -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    calls = [ToolCall("c1", "broken", '{"x": 1}'), ToolCall("c2", "broken", '{"x": "not a number"}'),
             ToolCall("c3", "missing", "{}")]
    provider = ScriptedProvider([calls, "sorry"])
    agent = agent_with(provider, [broken])
    assert await agent.chat("try") == "sorry"
    results = {m.tool_call_id: m for m in provider.requests[1][0] if m.role == "tool"}
    assert all(m.is_error for m in results.values())
    assert "RuntimeError: disk on fire" in results["c1"].content
    assert "bad arguments" in results["c2"].content and "x" in results["c2"].content
    assert "no tool named 'missing'" in results["c3"].content


async def test_arguments_split_across_many_deltas_arrive_whole() -> None:
    got: list[str] = []

    def echo(text: str) -> str:
        """Echoes."""
        got.append(text)
        return text

    long = "x" * 300
    call = ToolCall("c", "echo", json.dumps({"text": long}))
    provider = ScriptedProvider([[call], "ok"], tool_call_pieces=100)
    agent = agent_with(provider, [echo])
    events = [e async for e in agent.chat_stream("go").events()]
    assert sum(isinstance(e, ToolCallArgumentsDelta) for e in events) > 50
    assert got == [long]


async def test_the_event_stream_is_typed_and_in_order() -> None:
    provider = ScriptedProvider([["Hm. ", WEATHER], "Sunny."])
    agent = agent_with(provider, [get_weather])
    events = [e async for e in agent.chat_stream("w?").events()]
    kinds = [type(e) for e in events]
    assert kinds[0] is TextDelta and kinds[1] is ToolCallStarted
    step_at = kinds.index(StepFinished)
    assert kinds.index(ToolCallFinished) < step_at < kinds.index(ToolResultEvent) < len(kinds) - 1
    assert kinds[-1] is TextDelta and events[-1] == TextDelta("Sunny.")
    result = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result.result.content == "sunny in Paris"


async def test_a_handler_sees_the_step_before_any_tool_runs() -> None:
    order: list[str] = []

    class Saver(EventHandler):
        async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
            await asyncio.sleep(0.01)
            order.append(f"saved {step.message.id is not None}")

    def get_weather(city: str) -> str:
        """Weather."""
        order.append("ran")
        return "sunny"

    agent = agent_with(ScriptedProvider([[WEATHER], "ok"]), [get_weather], handlers=[Saver()])
    await agent.chat("w")
    assert order == ["saved True", "ran"]


async def test_a_failing_step_hook_runs_no_tool_and_answers_the_calls() -> None:
    ran: list[str] = []

    class Failing(EventHandler):
        async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
            raise RuntimeError("database gone")

    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    agent = agent_with(ScriptedProvider([[WEATHER], "ok"]), [get_weather], handlers=[Failing()])
    stream = agent.chat_stream("w")
    with pytest.raises(RuntimeError, match="database gone"):
        await stream.text_async()
    assert ran == [] and stream.status == "error"
    check_tool_sequence(agent.history)  # the call got an error result in memory


async def test_a_hanging_tool_is_cancelled_with_the_turn_and_its_call_answered() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def hang() -> str:
        """Never ends."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    def quick() -> str:
        """Ends at once."""
        return "quick"

    rec = Recorder()
    calls = [ToolCall("h", "hang", "{}"), ToolCall("q", "quick", "{}")]
    agent = agent_with(ScriptedProvider([calls, "unreachable"]), [hang, quick], handlers=[rec])
    stream = agent.chat_stream("go")

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.05)  # the quick one finished
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.status == "cancelled" and cancelled == [True]
    results = {m.tool_call_id: m for kind, m in rec.log if kind == "result"}
    assert results["q"].content == "quick" and not results["q"].is_error
    assert results["h"].is_error and results["h"].status == "cancelled" and "cancelled" in results["h"].content
    last = rec.log[-1]
    assert last[0] == "cancel" and last[1].ended_in_tools and last[1].text == ""
    check_tool_sequence(agent.history)


async def test_breaking_out_of_the_event_stream_mid_tool_cancels_it() -> None:
    async def hang() -> str:
        """Never ends."""
        await asyncio.Event().wait()
        return "never"

    rec = Recorder()
    agent = agent_with(ScriptedProvider([[ToolCall("h", "hang", "{}")], "x"]), [hang], handlers=[rec])
    stream = agent.chat_stream("go")
    async for event in stream.events():
        if isinstance(event, StepFinished):
            break
    await stream.aclose()
    assert stream.status == "cancelled"
    assert [kind for kind, _ in rec.log] == ["calls", "result", "cancel"]


async def test_the_round_limit_ends_the_turn_with_an_error_and_answers_the_last_calls() -> None:
    calls = 0

    def ping() -> str:
        """Pong."""
        nonlocal calls
        calls += 1
        return "pong"

    provider = ScriptedProvider([[ToolCall(f"p{i}", "ping", "{}")] for i in range(5)])  # asks again and again
    rec = Recorder()
    agent = agent_with(provider, [ping], rounds=2, handlers=[rec])
    stream = agent.chat_stream("loop")
    with pytest.raises(ToolRoundsExceededError, match="after 2 rounds"):
        await stream.text_async()
    assert calls == 2 and len(provider.requests) == 3 and stream.status == "error"
    last_result = [m for kind, m in rec.log if kind == "result"][-1]
    assert last_result.is_error and "not run" in last_result.content
    check_tool_sequence(agent.history)


async def test_with_messages_the_calls_end_the_turn_and_are_not_run() -> None:
    ran: list[str] = []

    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    provider = ScriptedProvider([[WEATHER], "It is sunny."])
    rec = Recorder()
    agent = agent_with(provider, [get_weather], handlers=[rec])
    stream = agent.chat_stream("w?", messages=[ChatMessage("user", "w?")])
    await stream.text_async()
    assert stream.tool_calls == (WEATHER,) and ran == [] and len(provider.requests) == 1
    assert rec.log[-1][0] == "reply" and rec.log[-1][1].tool_calls == (WEATHER,)
    # the caller ran the tool and sends the whole list back, tool messages included
    answer = [ChatMessage("user", "w?"), ChatMessage("assistant", "", tool_calls=(WEATHER,)),
              ChatMessage("tool", "sunny", tool_call_id="call_w")]
    assert await agent.chat("w?", messages=answer) == "It is sunny."
    assert [m.role for m in provider.requests[1][0]] == ["user", "assistant", "tool"]


async def test_messages_with_an_unanswered_call_are_refused_before_anything_is_sent() -> None:
    provider = ScriptedProvider(["x"])
    agent = agent_with(provider, [get_weather])
    bad = [ChatMessage("user", "w?"), ChatMessage("assistant", "", tool_calls=(WEATHER,)), ChatMessage("user", "?")]
    with pytest.raises(ConfigError, match="no tool result"):
        await agent.chat("?", messages=bad)
    assert provider.requests == []


async def test_a_call_cut_mid_arguments_runs_nothing_and_leaves_a_valid_history() -> None:
    ran: list[str] = []

    def get_weather(city: str) -> str:
        """Weather."""
        ran.append(city)
        return "sunny"

    provider = ScriptedProvider([["Checking. ", WEATHER], "fine"], tool_call_pieces=4,
                                fail=StreamInterruptedError("cut"), fail_after=3, fail_on=[0])
    rec = Recorder()
    agent = agent_with(provider, [get_weather], handlers=[rec])
    stream = agent.chat_stream("w")
    with pytest.raises(StreamInterruptedError):
        await stream.text_async()
    assert ran == [] and stream.status == "error" and stream.text == "Checking. "
    assert [kind for kind, _ in rec.log] == ["error"] and rec.log[0][1].text == "Checking. "
    assert any("cut off mid-stream" in n for n in stream.notes)
    check_tool_sequence(agent.history)
    assert await agent.chat("again") == "fine"


def test_with_tools_takes_functions_and_tools_and_refuses_the_rest() -> None:
    async def fetch(url: str) -> str:
        """Fetch."""
        return url

    builder = LLMAgentBuilder().with_provider(ScriptedProvider()).with_tools([get_weather, tool(fetch)])
    agent = builder.build()
    assert [t.name for t in agent.tools] == ["get_weather", "fetch"] and agent.max_tool_rounds == 8
    assert [t.name for t in agent.params.tools] == ["get_weather", "fetch"]
    with pytest.raises(ConfigError, match="no function to run"):
        LLMAgentBuilder().with_tools([ToolSpec("x", "", {"type": "object"})])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="same name: get_weather"):
        LLMAgentBuilder().with_tools([get_weather, get_weather])
    with pytest.raises(ConfigError, match="max_tool_rounds"):
        LLMAgentBuilder().with_max_tool_rounds(0)
    with pytest.raises(ConfigError, match="list of functions"):
        LLMAgentBuilder().with_tools(get_weather)  # type: ignore[arg-type]
