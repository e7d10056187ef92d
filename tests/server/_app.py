"""A served app with a scripted provider, for tests and benchmarks: ``python -m tests.server._app --db URL --port P``.

``mofa serve`` itself is started by the tests that need the real provider choice (OPENAI_* env, agent rows);
this one makes runs deterministic, and lets one server play every test's script. A user message may say
``words=N`` (the reply has N words, one delta each), ``delay=S`` (seconds between deltas), ``big=N`` (one more
delta of N characters), ``pad=N`` (every delta N characters longer), ``stamps=N`` (N deltas that each hold the
time they were made, for the benchmark's latency per delta), ``echo`` (the reply is what the provider was sent:
one ``role: content`` line per message, the recording upstream of the OpenAI-view tests), ``echoparams`` (the
reply is the model, temperature and max tokens it was given).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence

import uvicorn

from mofa_sdk.llm import ChatMessage, ChatParams, Finish, ProviderEvent, ScriptedProvider, StreamStarted, TextDelta
from mofa_sdk.llm._scripted import split_words
from mofa_sdk.server import ServeConfig, create_app

_WORDS = re.compile(r"\bwords=(\d+)")
_DELAY = re.compile(r"\bdelay=([0-9.]+)")
_BIG = re.compile(r"\bbig=(\d+)")
_STAMPS = re.compile(r"\bstamps=(\d+)")
_PAD = re.compile(r"\bpad=(\d+)")
_ECHO = re.compile(r"\becho\b")


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
        return ScriptedProvider([pieces], delta_delay=pace).stream(messages, params)

    async def aclose(self) -> None:
        return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--words", type=int, default=30)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--keepalive", type=float, default=15.0)
    p.add_argument("--checkpoint", type=float, default=1.0)
    p.add_argument("--lease", type=float, default=5.0)
    p.add_argument("--rls", action="store_true")
    a = p.parse_args()
    config = ServeConfig(database_url=a.db, keepalive_seconds=a.keepalive, checkpoint_interval=a.checkpoint,
                         heartbeat_seconds=0.5, owner_timeout_seconds=2.0, probe_seconds=1.0,
                         streaming_lease_seconds=a.lease, row_level_security=a.rls,
                         max_reply_chars=None)  # some runs stream 10 MB on purpose
    app = create_app(config, provider=ByContent(a.words, a.delay))
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
