"""The tool loop's parts: the typed events of a turn, a step (one model call that ended in tool calls), and
the concurrent run of one message's calls. ``ChatStream`` drives them (``_stream``).

A turn is model call → the calls of its message, run concurrently → the next model call with the results
→ … until a message without calls (the final reply) or the round limit. A tool that raises, or whose
arguments do not fit, gives an ``is_error`` result the model sees; a call of a tool the agent does not have
too. Nothing here writes: the event handlers (``on_tool_calls``, ``on_tool_result``) do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..ids import uuid7
from ._messages import ToolCall, ToolResult
from ._provider import TextDelta
from ._toolcalls import ToolCallArgumentsDelta, ToolCallFinished, ToolCallStarted
from ._tools import Tool
from ._types import ChatMessage, ReplyStatus, TurnResult

__all__ = [
    "AgentEvent",
    "StepFinished",
    "ToolResultEvent",
    "ToolRun",
    "ToolStep",
    "unanswered_result",
]


@dataclass(frozen=True, slots=True)
class ToolStep:
    """One model call of a turn that ended in tool calls: ``message`` is the assistant message making them
    (its ``id`` is the stored row's), ``result`` that call's record (usage, latency, finish reason, response
    id; its ``text`` is the message's). ``index`` counts the turn's model calls from 0."""

    index: int
    message: ChatMessage
    result: TurnResult

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    """A tool call was answered: ``message`` is the ``tool`` message the model gets (``is_error`` when the
    tool raised, its arguments did not fit, or it was cancelled)."""

    call: ToolCall
    message: ChatMessage

    @property
    def result(self) -> ToolResult:
        result = self.message.tool_result
        assert result is not None  # a tool message always carries one
        return result


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A model call ended in tool calls, and its message was handed to the event handlers (saved, with a
    persistence plugin) before any of its tools runs."""

    step: ToolStep


#: what ``ChatStream.events()`` yields, in order: text and tool-call events as they stream, a
#: ``StepFinished`` after each model call that made calls, a ``ToolResultEvent`` per result as it arrives
AgentEvent = (
    TextDelta | ToolCallStarted | ToolCallArgumentsDelta | ToolCallFinished | StepFinished | ToolResultEvent
)


def unanswered_result(call: ToolCall, status: ReplyStatus, why: str) -> ChatMessage:
    """The ``is_error`` result a call gets when it was not answered by its tool (cancelled, not run)."""
    return ChatMessage.for_tool_result(ToolResult(call.id, why, is_error=True), status=status, id=uuid7())


async def _run_one(tools: Mapping[str, Tool], call: ToolCall) -> ToolResult:
    found = tools.get(call.name)
    if found is None:
        names = ", ".join(sorted(tools)) or "none"
        return ToolResult(call.id, f"there is no tool named {call.name!r} (the tools: {names})", is_error=True)
    return await found.run(call)


class ToolRun:
    """The calls of one message, running concurrently (a sync tool in a worker thread). ``next()`` gives the
    results as they finish; ``stop()`` cancels what still runs and gives back what finished meanwhile."""

    def __init__(self, tools: Mapping[str, Tool], calls: Sequence[ToolCall]) -> None:
        self.calls = tuple(calls)
        self._tasks: dict[asyncio.Future[ToolResult], ToolCall] = {
            asyncio.ensure_future(_run_one(tools, call)): call for call in self.calls
        }
        #: call id -> the tool message answering it, in the order the results arrived
        self.answered: dict[str, ChatMessage] = {}

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def next(self) -> list[tuple[ToolCall, ChatMessage]]:
        """The results that finished first (at least one), as tool messages with their own ids."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        out: list[tuple[ToolCall, ChatMessage]] = []
        for task in sorted(done, key=lambda t: self.calls.index(self._tasks[t])):
            call = self._tasks.pop(task)
            message = ChatMessage.for_tool_result(task.result(), id=uuid7())
            self.answered[call.id] = message
            out.append((call, message))
        return out

    async def stop(self, status: ReplyStatus, why: str) -> list[ChatMessage]:
        """Cancel the tools still running; every call without an answer gets an ``is_error`` result with
        ``status`` saying ``why`` (a tool that finished meanwhile keeps its real result). A sync tool's thread
        cannot be stopped: it runs to its end, and its result is dropped."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        out: list[ChatMessage] = []
        for task, call in self._tasks.items():
            if not task.cancelled() and task.exception() is None:
                message = ChatMessage.for_tool_result(task.result(), id=uuid7())
            else:
                message = unanswered_result(call, status, why)
            self.answered[call.id] = message
            out.append(message)
        self._tasks.clear()
        return out

    def in_call_order(self) -> list[ChatMessage]:
        """The answers in the order of the calls (what the next request carries)."""
        return [self.answered[call.id] for call in self.calls if call.id in self.answered]


@dataclass(eq=False)
class OpenStep:
    """The step whose tools were running (or about to) when the turn ended: what its calls still need."""

    step: ToolStep
    #: True once ``on_tool_calls`` returned: only then may its results be handed on (saved), never orphans
    saved: bool = False
    run: ToolRun | None = None
    #: call ids whose result went through ``on_tool_result``
    handed: set[str] = field(default_factory=set)

    async def settle(self, status: ReplyStatus, why: str) -> tuple[list[ChatMessage], list[ChatMessage]]:
        """Stop its tools; returns (results new to the history, results still to hand to the handlers)."""
        handed = self.handed
        new: list[ChatMessage] = []
        if self.run is not None:
            new = await self.run.stop(status, why)
            answered = self.run.answered
        else:
            answered = {}
        for call in self.step.calls:
            if call.id not in answered:  # the tools never started (the step's hook failed, say)
                message = unanswered_result(call, status, why)
                answered[call.id] = message
                new.append(message)
        to_hand = [answered[c.id] for c in self.step.calls if c.id not in handed] if self.saved else []
        return new, to_hand
