"""A provider that plays back scripted replies: for tests and offline examples, no model, no network."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Literal

from ..errors import ConfigError, ProviderError
from ._messages import ToolCall
from ._provider import ChatParams, Finish, ProviderEvent, StreamStarted, TextDelta, UsageReport
from ._tokens import estimate_tokens
from ._toolcalls import ToolCallArgumentsDelta, ToolCallFinished, ToolCallStarted
from ._types import ChatMessage, Usage

__all__ = ["ScriptedProvider", "split_words"]

_WORDS = re.compile(r"\s*\S+|\s+$")

#: what a scripted reply holds: text deltas, and tool calls (streamed after the text as a server does)
ReplyItem = str | ToolCall


def split_words(text: str) -> list[str]:
    """``"Hello big world"`` -> ``["Hello", " big", " world"]``; joining the parts gives ``text`` back."""
    return _WORDS.findall(text)


class ScriptedProvider:
    """Streams the scripted replies in turn, one per request.

    ``replies``: each a list of deltas, or a string that is split into words. After the last reply the
    provider repeats it, or starts over with ``cycle=True``. A reply's list may hold :class:`ToolCall`
    items: each is streamed as ``ToolCallStarted`` and its arguments in ``tool_call_pieces`` fragments
    (each fragment counts as a delta for ``fail_after``/``hang_after``), then ``ToolCallFinished`` for every
    call before the usage; the finish reason is then ``"tool_calls"``.
    ``usage``: a :class:`Usage` to report on every complete reply, ``"estimate"`` (counted with
    :meth:`count_tokens` and marked estimated) or ``"omit"`` (no usage event at all, like a server that
    sends none).
    ``fail``: a :class:`ProviderError` raised after ``fail_after`` deltas (0: before the first token),
    with ``partial_text`` set to what streamed; ``fail_on`` limits it (and ``hang_on`` the hang) to the
    requests with those indexes (0-based), every request otherwise.
    ``hang_after``: after that many deltas the stream waits forever (for cancellation tests).

    ``requests`` records every ``(messages, params)``; ``closed_early`` counts streams closed (``aclose``
    or cancellation) before they finished; ``open_streams`` counts streams started and not yet ended.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[str | Sequence[ReplyItem]] | str = ("Hello from the scripted provider.",),
        *,
        default_model: str = "scripted-model",
        cycle: bool = False,
        first_token_delay: float = 0.0,
        delta_delay: float = 0.0,
        usage: Usage | Literal["estimate", "omit"] = "estimate",
        fail: ProviderError | None = None,
        fail_after: int = 0,
        fail_on: Sequence[int] | None = None,
        hang_after: int | None = None,
        hang_on: Sequence[int] | None = None,
        finish_reason: str = "stop",
        tool_call_pieces: int = 3,
    ) -> None:
        if isinstance(replies, str):
            replies = [replies]
        if not replies:
            raise ConfigError("ScriptedProvider needs at least one reply")
        if fail is not None and not isinstance(fail, ProviderError):
            raise ConfigError(f"fail must be a ProviderError instance, got {fail!r}")
        if fail_after < 0 or (hang_after is not None and hang_after < 0):
            raise ConfigError("fail_after and hang_after must be >= 0")
        if first_token_delay < 0 or delta_delay < 0:
            raise ConfigError("delays must be >= 0 seconds")
        if tool_call_pieces < 1:
            raise ConfigError("tool_call_pieces must be >= 1")
        self.replies: list[list[ReplyItem]] = [
            list(split_words(r)) if isinstance(r, str) else list(r) for r in replies
        ]
        for reply in self.replies:
            for item in reply:
                if not isinstance(item, str | ToolCall):
                    raise ConfigError(f"a scripted reply holds text deltas and ToolCalls, not {type(item).__name__}")
        self.tool_call_pieces = tool_call_pieces
        self.default_model = default_model
        self.cycle = cycle
        self.first_token_delay = first_token_delay
        self.delta_delay = delta_delay
        self.usage = usage
        self.fail = fail
        self.fail_after = fail_after
        self.fail_on = None if fail_on is None else frozenset(fail_on)
        self.hang_after = hang_after
        self.hang_on = None if hang_on is None else frozenset(hang_on)
        self.finish_reason = finish_reason
        self.requests: list[tuple[list[ChatMessage], ChatParams]] = []
        self.closed_early = 0
        self.open_streams = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"ScriptedProvider({len(self.replies)} replies, model={self.default_model!r})"

    def _reply_for(self, index: int) -> list[ReplyItem]:
        n = len(self.replies)
        return self.replies[index % n] if self.cycle else self.replies[min(index, n - 1)]

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def stream(self, messages: Sequence[ChatMessage], params: ChatParams) -> AsyncIterator[ProviderEvent]:
        index = len(self.requests)
        self.requests.append((list(messages), params))
        return self._play(index, list(messages), params)

    async def _play(
        self, index: int, messages: list[ChatMessage], params: ChatParams
    ) -> AsyncIterator[ProviderEvent]:
        reply = self._reply_for(index)
        fail = self.fail if self.fail_on is None or index in self.fail_on else None
        hang = self.hang_after if self.hang_on is None or index in self.hang_on else None
        texts = [item for item in reply if isinstance(item, str)]
        calls = [item for item in reply if isinstance(item, ToolCall)]
        if not params.stream:  # one non-streamed answer: its text as a single delta, each call whole
            texts = ["".join(texts)] if texts or not calls else []
        deltas: list[TextDelta | ToolCallStarted | ToolCallArgumentsDelta] = [TextDelta(t) for t in texts]
        for position, call in enumerate(calls):
            deltas.append(ToolCallStarted(position, call.id, call.name))
            pieces = self.tool_call_pieces if params.stream else 1
            deltas += [ToolCallArgumentsDelta(position, piece) for piece in _split(call.arguments, pieces)]
        response_id = f"scripted-{index}"
        sent: list[str] = []
        finished = failed = False
        self.open_streams += 1
        try:
            if self.first_token_delay:
                await asyncio.sleep(self.first_token_delay)
            for i in range(len(deltas) + 1):
                if fail is not None and i == self.fail_after:
                    fail.partial_text = "".join(sent)
                    failed = True
                    raise fail
                if hang is not None and i == hang:
                    await asyncio.Event().wait()
                if i == len(deltas):
                    break
                if i == 0:
                    yield StreamStarted(response_id)
                elif self.delta_delay:
                    await asyncio.sleep(self.delta_delay)
                delta = deltas[i]
                if isinstance(delta, TextDelta):
                    sent.append(delta.text)
                yield delta
            for position, call in enumerate(calls):
                yield ToolCallFinished(position, call)
            if self.usage == "estimate":
                prompt = sum(self.count_tokens(m.content) for m in messages)
                completion = self.count_tokens("".join(sent) + "".join(c.arguments for c in calls))
                yield UsageReport(Usage(prompt, completion, prompt + completion, estimated=True))
            elif isinstance(self.usage, Usage):
                yield UsageReport(replace(self.usage))
            yield Finish("tool_calls" if calls else self.finish_reason, response_id)
            finished = True
        finally:
            self.open_streams -= 1
            if not (finished or failed):
                self.closed_early += 1

    async def aclose(self) -> None:
        self.closed = True


def _split(text: str, pieces: int) -> list[str]:
    """``text`` in at most ``pieces`` fragments of near-equal size (none for empty text)."""
    if not text:
        return []
    size = -(-len(text) // min(pieces, len(text)))
    return [text[i : i + size] for i in range(0, len(text), size)]
