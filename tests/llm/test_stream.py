"""ChatStream: deltas, timings, early close, errors, cancellation and the order of hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mofa_sdk.errors import ProviderServerError, StreamConsumedError, StreamInterruptedError, VetoedError
from mofa_sdk.llm import EventHandler, LLMAgent, LLMAgentBuilder, ScriptedProvider, Usage
from mofa_sdk.llm._tokens import MESSAGE_OVERHEAD
from tests.support.recorder import Recorder, contents


def make_agent(provider: ScriptedProvider, *handlers: EventHandler, window: int | None = None) -> LLMAgent:
    b = LLMAgentBuilder().with_provider(provider).with_system_prompt("sys").with_sliding_window(window)
    for h in handlers:
        b.with_event_handler(h)
    return b.build()


async def test_deltas_text_usage_and_timings() -> None:
    p = ScriptedProvider(["Hello big world"], delta_delay=0.001, usage=Usage(11, 3, 14))
    agent = make_agent(p)
    s = agent.chat_stream("Hi")
    assert s.status is None and s.usage is None
    deltas = [d async for d in s]
    assert deltas == ["Hello", " big", " world"]
    assert s.text == "Hello big world"
    assert s.status == "complete" and s.error is None
    assert s.usage == Usage(11, 3, 14)
    assert s.latency_ms is not None and s.latency_ms >= 0
    assert s.time_to_first_token_ms is not None and s.time_to_first_token_ms <= s.latency_ms
    assert s.tokens_per_second is not None and s.tokens_per_second > 0
    assert s.finish_reason == "stop"
    assert s.response_id == "scripted-0"
    assert contents(agent) == [
        ("system", "sys", "complete"),
        ("user", "Hi", "complete"),
        ("assistant", "Hello big world", "complete"),
    ]


async def test_usage_is_estimated_and_marked_when_the_provider_sends_none() -> None:
    p = ScriptedProvider(["one two three"], usage="omit")
    agent = make_agent(p)
    s = agent.chat_stream("question")
    assert await s.text_async() == "one two three"
    assert s.usage is not None and s.usage.estimated
    assert s.usage.completion_tokens == p.count_tokens("one two three")
    # the one estimate of the package: each message's text plus the template's per-message overhead
    assert s.usage.prompt_tokens == p.count_tokens("sys") + p.count_tokens("question") + 2 * MESSAGE_OVERHEAD
    assert s.usage.total_tokens == s.usage.prompt_tokens + s.usage.completion_tokens


async def test_seed_loop_prints_the_reply(capsys: pytest.CaptureFixture[str]) -> None:
    agent = make_agent(ScriptedProvider(["Streaming works fine."]))
    user_input = "Tell me something"
    async for text in agent.chat_stream(user_input):
        print(text, end="", flush=True)
    assert capsys.readouterr().out == "Streaming works fine."


async def test_early_break_closes_provider_and_keeps_the_partial() -> None:
    p = ScriptedProvider(["a b c d e"])
    rec = Recorder()
    agent = make_agent(p, rec)
    s = agent.chat_stream("go")
    async for d in s:
        if d == " b":
            break
    await s.aclose()
    assert p.closed_early == 1 and p.open_streams == 0
    assert s.status == "cancelled" and s.text == "a b"
    assert s.usage is not None and s.usage.estimated
    assert rec.log[-1] == ("rec", "on_cancel", "cancelled", "a b")
    assert contents(agent)[1:] == [("user", "go", "complete"), ("assistant", "a b", "cancelled")]
    await s.aclose()  # idempotent
    assert [r[1] for r in rec.log].count("on_cancel") == 1


async def test_break_without_a_reference_is_finalized_and_the_session_goes_on() -> None:
    p = ScriptedProvider(["first reply here", "second"])
    agent = make_agent(p)
    async for _ in agent.chat_stream("one"):
        break
    # the next turn on the session waits for the abandoned one to be finalized, then sees its partial
    assert await agent.chat("two") == "second"
    assert p.closed_early == 1
    assert [m.content for m in p.requests[1][0]] == ["sys", "one", "first", "two"]
    assert p.requests[1][0][2].status == "cancelled"


async def test_async_with_closes_the_stream() -> None:
    p = ScriptedProvider(["x y z"])
    agent = make_agent(p)
    async with agent.chat_stream("q") as s:
        async for _ in s:
            break
    assert s.status == "cancelled" and s.text == "x"
    assert p.open_streams == 0 and p.closed_early == 1


async def test_closing_before_iterating_calls_nothing() -> None:
    p = ScriptedProvider(["never"])
    rec = Recorder()
    agent = make_agent(p, rec)
    async with agent.chat_stream("q") as s:
        pass
    assert s.status == "cancelled" and s.text == ""
    assert p.requests == [] and rec.log == []
    assert agent.history == [agent.history[0]]  # only the system prompt


async def test_iterating_twice_is_an_error() -> None:
    agent = make_agent(ScriptedProvider(["once"]))
    s = agent.chat_stream("q")
    assert [d async for d in s] == ["once"]
    with pytest.raises(StreamConsumedError):
        async for _ in s:
            pass
    assert await s.text_async() == "once"  # the finished text stays readable
    s2 = agent.chat_stream("q2")
    await s2.collect()
    with pytest.raises(StreamConsumedError):
        s2.__aiter__()


async def test_provider_error_mid_stream_raises_with_partial_and_keeps_it() -> None:
    err = StreamInterruptedError("connection cut")
    p = ScriptedProvider(["Hello big world"], fail=err, fail_after=2)
    rec = Recorder()
    agent = make_agent(p, rec)
    s = agent.chat_stream("q")
    seen: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for d in s:
            seen.append(d)
    assert seen == ["Hello", " big"]
    assert info.value.partial_text == "Hello big"
    assert s.status == "error" and s.error is err and s.text == "Hello big"
    assert rec.log[-1] == ("rec", "on_error", "error", "Hello big", "StreamInterruptedError")
    assert rec.results[-1].error is err
    assert contents(agent)[1:] == [("user", "q", "complete"), ("assistant", "Hello big", "error")]


async def test_error_before_first_token_adds_no_reply() -> None:
    p = ScriptedProvider(["fine"], fail=ProviderServerError("boom", status_code=500), fail_on=[0])
    agent = make_agent(p)
    with pytest.raises(ProviderServerError):
        await agent.chat("q1")
    assert contents(agent) == [("system", "sys", "complete")]  # an unanswered message is no round
    assert await agent.chat("q2") == "fine"
    assert [m.content for m in p.requests[1][0]] == ["sys", "q2"]


async def test_task_cancellation_records_cancelled_and_agent_stays_usable() -> None:
    p = ScriptedProvider(["partial then more", "next"], hang_after=1, hang_on=[0])
    rec = Recorder()
    agent = make_agent(p, rec)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in agent.chat_stream("q"):
            got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.log[-1] == ("rec", "on_cancel", "cancelled", "partial")
    assert p.open_streams == 0
    assert contents(agent)[1:] == [("user", "q", "complete"), ("assistant", "partial", "cancelled")]
    assert await agent.chat("again") == "next"


async def test_a_second_cancel_does_not_lose_the_finishing_hook() -> None:
    p = ScriptedProvider(["a b c", "after"], hang_after=1, hang_on=[0])
    rec = Recorder()
    rec.cancel_gate = asyncio.Event()
    agent = make_agent(p, rec)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in agent.chat_stream("q"):
            got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    await rec.cancel_entered.wait()  # the hook is now waiting at the gate
    task.cancel()  # a second cancellation while the hook runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not rec.cancel_finished
    nxt = asyncio.create_task(agent.chat("next"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(p.requests) == 1  # the session stays busy until the hook is done
    rec.cancel_gate.set()
    assert await nxt == "after"
    assert rec.cancel_finished
    assert [m.content for m in p.requests[1][0]] == ["sys", "q", "a", "next"]


async def test_hook_order_and_arguments() -> None:
    log: list[tuple[Any, ...]] = []
    first, second = Recorder("h1", log), Recorder("h2", log)
    p = ScriptedProvider(["ab cd"], usage=Usage(5, 2, 7))
    agent = make_agent(p, first, second)
    assert await agent.chat("question") == "ab cd"
    assert log == [
        ("h1", "before_call", "question"),
        ("h2", "before_call", "question"),
        ("h1", "on_delta", "ab", "ab"),
        ("h2", "on_delta", "ab", "ab"),
        ("h1", "on_delta", " cd", "ab cd"),
        ("h2", "on_delta", " cd", "ab cd"),
        ("h1", "after_reply", "complete", "ab cd"),
        ("h2", "after_reply", "complete", "ab cd"),
    ]
    turn = first.turns[0]
    assert turn is second.turns[0]
    assert turn.session_id == agent.session_id and turn.agent_id == agent.id
    assert turn.user_id == agent.user_id and turn.tenant_id == agent.tenant_id
    assert turn.model == "scripted-model"
    assert turn.request == p.requests[0][0]
    assert [m.content for m in turn.request] == ["sys", "question"]
    result = first.results[0]
    assert result.usage == Usage(5, 2, 7) and result.model == "scripted-model"
    assert result.finish_reason == "stop" and result.response_id == "scripted-0"
    assert result.time_to_first_token_ms is not None and result.error is None


async def test_before_call_veto_never_calls_the_provider() -> None:
    p = ScriptedProvider(["unused"])
    rec = Recorder()
    rec.veto = True
    agent = make_agent(p, rec)
    s = agent.chat_stream("forbidden")
    with pytest.raises(VetoedError):
        await s.text_async()
    assert p.requests == []
    assert s.status == "error" and isinstance(s.error, VetoedError)
    assert [r[1] for r in rec.log] == ["before_call"]
    assert contents(agent) == [("system", "sys", "complete")]
    rec.veto = False
    assert await agent.chat("allowed") == "unused"  # the session lock was released


async def test_failing_after_reply_is_raised_after_the_stream() -> None:
    log: list[tuple[Any, ...]] = []
    bad, good = Recorder("bad", log), Recorder("good", log)
    bad.fail_in = {"after_reply"}
    agent = make_agent(ScriptedProvider(["all of it"]), bad, good)
    s = agent.chat_stream("q")
    seen: list[str] = []
    with pytest.raises(RuntimeError, match=r"bad\.after_reply failed"):
        async for d in s:
            seen.append(d)
    assert "".join(seen) == "all of it"
    assert ("good", "after_reply", "complete", "all of it") in log  # the other handler still ran
    assert s.status == "complete"
    assert contents(agent)[-1] == ("assistant", "all of it", "complete")


async def test_failing_on_delta_ends_the_turn_as_error() -> None:
    rec = Recorder()
    rec.fail_in = {"on_delta"}
    p = ScriptedProvider(["x y"])
    agent = make_agent(p, rec)
    with pytest.raises(RuntimeError, match="on_delta"):
        await agent.chat("q")
    assert rec.log[-1][:3] == ("rec", "on_error", "error")
    assert p.open_streams == 0
    assert contents(agent)[-1] == ("assistant", "x", "error")


async def test_non_streamed_request_is_one_delta() -> None:
    p = ScriptedProvider(["one two three"])
    agent = LLMAgentBuilder().with_provider(p).with_stream(False).build()
    assert [d async for d in agent.chat_stream("q")] == ["one two three"]
    assert p.requests[0][1].stream is False


# -- the scripted provider itself ---------------------------------------------------------------------
@pytest.mark.parametrize("text", ["Hello big world", "  lead and trail  ", "one", "", "tab\tand\nnewline"])
def test_split_words_joins_back(text: str) -> None:
    from mofa_sdk.llm._scripted import split_words

    assert "".join(split_words(text)) == text


async def test_scripted_replies_repeat_the_last_or_cycle() -> None:
    repeat = make_agent(ScriptedProvider(["a", ["b", "c"]]))
    assert [await repeat.chat(f"q{i}") for i in range(3)] == ["a", "bc", "bc"]
    cycle = make_agent(ScriptedProvider(["a", "b"], cycle=True))
    assert [await cycle.chat(f"q{i}") for i in range(3)] == ["a", "b", "a"]


async def test_scripted_records_requests_and_fails_before_the_first_token() -> None:
    err = ProviderServerError("down", status_code=503)
    p = ScriptedProvider(["never seen"], fail=err)
    agent = LLMAgentBuilder().with_provider(p).with_model("m2").with_temperature(0.1).build()
    s = agent.chat_stream("q")
    with pytest.raises(ProviderServerError):
        await s.text_async()
    assert err.partial_text == "" and s.text == "" and s.time_to_first_token_ms is None
    messages, params = p.requests[0]
    assert [m.content for m in messages] == ["q"] and params.model == "m2" and params.temperature == 0.1
    assert p.closed_early == 0 and p.open_streams == 0
