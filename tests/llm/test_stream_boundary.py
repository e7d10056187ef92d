"""The stream layer at the provider boundary, with the scripted provider: repaired text, dropped usage, the
idle timeout, the turn timeout and the reply size cap. End to end with HTTP and stores:
``tests/reliability/test_provider_boundary.py``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mofa_sdk.errors import (
    ConfigError,
    IdleTimeoutError,
    ProviderTimeoutError,
    ReplyTooLargeError,
    TurnTimeoutError,
    ValidationError,
)
from mofa_sdk.llm import LLMAgentBuilder, ProviderEvent, ScriptedProvider, StreamLimits, TextDelta, Usage
from tests.support.recorder import Recorder, contents

EMOJI = "\U0001f600"


def build(provider: ScriptedProvider, *handlers: Recorder, **limits: float | int | None) -> LLMAgentBuilder:
    b = LLMAgentBuilder().with_provider(provider).with_system_prompt("sys")
    for h in handlers:
        b.with_event_handler(h)
    if "idle" in limits:
        b.with_idle_timeout(limits["idle"])
    if "turn" in limits:
        b.with_turn_timeout(limits["turn"])
    if "chars" in limits:
        b.with_max_reply_chars(limits["chars"])  # type: ignore[arg-type]
    return b


async def test_split_and_lone_surrogates_reach_consumer_hooks_and_history_repaired() -> None:
    p = ScriptedProvider([["Hi ", "\ud83d", "\ude00", " and ", "\ude00", "!", "\ud83d"]])
    rec = Recorder()
    agent = build(p, rec).build()
    s = agent.chat_stream("q")
    seen = [d async for d in s]
    assert seen == ["Hi ", EMOJI, " and ", "\ufffd", "!", "\ufffd"]  # the held half never surfaces alone
    assert s.text == f"Hi {EMOJI} and \ufffd!\ufffd" and s.status == "complete"
    assert [e[2] for e in rec.log if e[1] == "on_delta"] == seen
    assert rec.results[-1].text == s.text
    assert s.notes == rec.results[-1].notes == [
        "joined 1 surrogate pair(s) split across deltas",
        "replaced 2 lone surrogate(s) by U+FFFD",
    ]
    assert contents(agent)[-1] == ("assistant", s.text, "complete")
    s.text.encode("utf-8")


async def test_clean_turns_have_no_notes() -> None:
    s = build(ScriptedProvider([f"plain {EMOJI} text"])).build().chat_stream("q")
    await s.text_async()
    assert s.notes == []


@pytest.mark.parametrize(
    "usage", [Usage(-5, 3, -2), Usage(11, 2**31, 2**31 + 11), Usage(11, 3, 2**63)], ids=["negative", "2**31", "2**63"]
)
async def test_implausible_usage_is_dropped_counted_locally_and_noted(usage: Usage) -> None:
    p = ScriptedProvider(["one two"], usage=usage)
    s = build(p).build().chat_stream("q")
    assert await s.text_async() == "one two"
    assert s.status == "complete"
    assert s.usage is not None and s.usage.estimated
    assert s.usage.completion_tokens == p.count_tokens("one two")
    assert len(s.notes) == 1 and s.notes[0].startswith("dropped the provider's implausible usage (")


async def test_idle_timeout_ends_a_silent_stream_as_error_with_the_partial() -> None:
    p = ScriptedProvider(["before the silence"], hang_after=2)
    rec = Recorder()
    agent = build(p, rec, idle=0.2).build()
    seen: list[str] = []
    with pytest.raises(IdleTimeoutError) as info:
        async for d in agent.chat_stream("q"):
            seen.append(d)
    assert isinstance(info.value, ProviderTimeoutError)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the timer's cancellation was taken back
    assert seen == ["before", " the"] and info.value.partial_text == "before the"
    assert rec.log[-1] == ("rec", "on_error", "error", "before the", "IdleTimeoutError")
    assert p.open_streams == 0 and p.closed_early == 1  # the provider's stream was closed
    assert contents(agent)[-1] == ("assistant", "before the", "error")


class Stubborn(ScriptedProvider):
    """A provider that swallows cancellation while it waits, then keeps talking."""

    async def _play(self, index: int, messages: Any, params: Any) -> AsyncIterator[ProviderEvent]:
        yield TextDelta("first")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        yield TextDelta(" after the cancel")


async def test_a_provider_swallowing_the_cancellation_still_times_out() -> None:
    agent = build(Stubborn(), idle=0.2).build()
    s = agent.chat_stream("q")
    seen: list[str] = []
    with pytest.raises(IdleTimeoutError):
        async for d in s:
            seen.append(d)
    assert seen == ["first"] and s.text == "first"
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_outside_cancellation_stays_a_cancellation_with_bounds_armed() -> None:
    p = ScriptedProvider(["a b c"], hang_after=1)
    agent = build(p, idle=30, turn=60).build()
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in agent.chat_stream("q"):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert contents(agent)[-1] == ("assistant", "a", "cancelled")


async def test_time_the_consumer_spends_is_not_provider_idleness() -> None:
    p = ScriptedProvider(["a b c"])
    agent = build(p, idle=0.1).build()
    seen = []
    async for d in agent.chat_stream("q"):
        seen.append(d)
        await asyncio.sleep(0.3)  # a slow consumer, three times the idle timeout per delta
    assert seen == ["a", " b", " c"]


async def test_turn_timeout_ends_a_steady_stream() -> None:
    p = ScriptedProvider(["w " * 10_000], delta_delay=0.01)
    agent = build(p, idle=None, turn=0.3).build()
    s = agent.chat_stream("q")
    seen = ""
    with pytest.raises(TurnTimeoutError) as info:
        async for d in s:
            seen += d
    assert seen and info.value.partial_text == seen == s.text
    assert s.status == "error" and p.open_streams == 0
    assert contents(agent)[-1] == ("assistant", seen, "error")


async def test_reply_cap_keeps_exactly_the_capped_reply() -> None:
    p = ScriptedProvider([["abcd"] * 100])
    rec = Recorder()
    agent = build(p, rec, chars=10).build()
    seen: list[str] = []
    with pytest.raises(ReplyTooLargeError) as info:
        async for d in agent.chat_stream("q"):
            seen.append(d)
    assert seen == ["abcd", "abcd", "ab"]
    assert info.value.partial_text == "abcdabcdab"
    assert rec.log[-1] == ("rec", "on_error", "error", "abcdabcdab", "ReplyTooLargeError")
    assert p.open_streams == 0 and p.closed_early == 1
    assert contents(agent)[-1] == ("assistant", "abcdabcdab", "error")


async def test_a_reply_exactly_at_the_cap_is_complete() -> None:
    s = build(ScriptedProvider([["abcd", "efgh"]]), chars=8).build().chat_stream("q")
    assert await s.text_async() == "abcdefgh" and s.status == "complete"


def test_limits_have_sensible_defaults_and_are_configurable() -> None:
    p = ScriptedProvider()
    assert build(p).build().limits == StreamLimits(60.0, 600.0, 1_000_000)
    agent = build(p, idle=5, turn=None, chars=100).build()
    assert agent.limits == StreamLimits(idle_timeout=5.0, turn_timeout=None, max_reply_chars=100)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_timeouts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="idle timeout must be a positive number of seconds"):
        LLMAgentBuilder().with_idle_timeout(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="turn timeout must be a positive number of seconds"):
        LLMAgentBuilder().with_turn_timeout(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_reply_caps_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_reply_chars must be a positive integer"):
        LLMAgentBuilder().with_max_reply_chars(bad)  # type: ignore[arg-type]


def test_a_system_prompt_utf8_cannot_encode_is_refused_by_the_builder() -> None:
    with pytest.raises(ValidationError, match=r"the system prompt contains a character UTF-8 cannot encode"):
        LLMAgentBuilder().with_system_prompt("\udcff")


async def test_unsendable_request_text_is_refused_before_any_hook_or_call() -> None:
    p = ScriptedProvider(["never"])
    rec = Recorder()
    agent = build(p, rec).build()
    s = agent.chat_stream("bad \ud83d text")
    with pytest.raises(ValidationError, match=r"the user message \(request message 1\)"):
        await s.text_async()
    assert s.status == "error" and p.requests == [] and rec.log == []
    assert await agent.chat("fine") == "never"  # the session is not stuck
