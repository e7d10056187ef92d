"""A scripted provider whose replies the user message shapes, for the served app of the tests and benchmarks.

A user message may say ``words=N`` (the reply has N words, one delta each), ``delay=S`` (seconds between
deltas), ``big=N`` (one more delta of N characters), ``pad=N`` (every delta N characters longer), ``stamps=N``
(N deltas that each hold the time they were made, for the benchmark's latency per delta), ``echo`` (the reply
is what the provider was sent: one ``role: content`` line per message, the recording upstream of the
OpenAI-view tests), ``echoparams`` (the reply is the model, temperature and max tokens it was given),
``fail=N`` (after its deltas the provider fails with an error message of N characters; ``failfirst=N``: before
any), ``wait=S`` (seconds before the first token).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence

from mofa_sdk.errors import ProviderError
from mofa_sdk.llm import ChatMessage, ChatParams, Finish, ProviderEvent, ScriptedProvider, StreamStarted, TextDelta
from mofa_sdk.llm._scripted import split_words

__all__ = ["ByContent", "reply_of", "stamps"]


async def _after(seconds: float, events: AsyncIterator[ProviderEvent]) -> AsyncIterator[ProviderEvent]:
    """``events``, the first of them ``seconds`` late (a provider slow to its first token)."""
    await asyncio.sleep(seconds)
    async for event in events:
        yield event

_WORDS = re.compile(r"\bwords=(\d+)")
_DELAY = re.compile(r"\bdelay=([0-9.]+)")
_BIG = re.compile(r"\bbig=(\d+)")
_STAMPS = re.compile(r"\bstamps=(\d+)")
_PAD = re.compile(r"\bpad=(\d+)")
_WAIT = re.compile(r"\bwait=([0-9.]+)")
_ECHO = re.compile(r"\becho\b")
_FAIL = re.compile(r"\bfail(first)?=(\d+)")


async def stamps(n: int, delay: float) -> AsyncIterator[ProviderEvent]:
    """``n`` deltas, each the wall-clock time it was made (``1700000000.123456;``)."""
    yield StreamStarted("stamps")
    for i in range(n):
        if i:
            await asyncio.sleep(delay)
        yield TextDelta(f"{time.time():.6f};")
    yield Finish("stop", "stamps")


def reply_of(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words)) + " ✓ «fin»\n"


class ByContent:
    """Scripted replies whose length and pace the user message chooses."""

    name = "scripted"
    default_model = "scripted-model"

    def __init__(self, words: int, delay: float) -> None:
        self.words, self.delay = words, delay
        self._counter = ScriptedProvider()

    def count_tokens(self, text: str) -> int:
        return self._counter.count_tokens(text)

    def stream(self, messages: Sequence[ChatMessage], params: ChatParams) -> AsyncIterator[ProviderEvent]:
        last = messages[-1].content if messages else ""
        wait = _WAIT.search(last)
        if wait is not None:
            return _after(float(wait.group(1)), self._stream(messages, params, last))
        return self._stream(messages, params, last)

    def _stream(self, messages: Sequence[ChatMessage], params: ChatParams, last: str
                ) -> AsyncIterator[ProviderEvent]:
        words, delay, big, n, pad = (r.search(last) for r in (_WORDS, _DELAY, _BIG, _STAMPS, _PAD))
        pace = float(delay.group(1)) if delay else self.delay
        if n is not None:
            return stamps(int(n.group(1)), pace or 0.002)
        if "echoparams" in last:
            sent = f"model={params.model} temperature={params.temperature} max_tokens={params.max_tokens}"
            return ScriptedProvider([split_words(sent)], delta_delay=pace).stream(messages, params)
        if _ECHO.search(last):
            sent = "".join(f"{m.role}: {m.content}\n" for m in messages)
            return ScriptedProvider([split_words(sent)], delta_delay=pace).stream(messages, params)
        pieces = split_words(reply_of(int(words.group(1)) if words else self.words))
        if big is not None:
            pieces.insert(len(pieces) // 2, " " + "é" * int(big.group(1)))
        if pad is not None:
            pieces = [p + "x" * int(pad.group(1)) for p in pieces]
        fail = _FAIL.search(last)
        if fail is not None:
            error = ProviderError("upstream said: " + "e" * int(fail.group(2)))
            return ScriptedProvider([pieces], delta_delay=pace, fail=error,
                                    fail_after=0 if fail.group(1) else len(pieces)).stream(messages, params)
        return ScriptedProvider([pieces], delta_delay=pace).stream(messages, params)

    async def aclose(self) -> None:
        return None
