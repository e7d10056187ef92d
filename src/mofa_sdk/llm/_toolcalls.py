"""Tool calls assembled from streamed deltas, as OpenAI-compatible servers send them. Pure code, no I/O.

A call arrives in pieces keyed by its ``index``: the first piece usually has the id and the function name,
later ones carry fragments of the arguments' JSON text. Servers differ: some send the id or the name late
(after argument fragments), some repeat them on every piece, some never send an id. The accumulator turns
the pieces into :class:`ToolCallStarted` / :class:`ToolCallArgumentsDelta` events and, at the end, into
complete :class:`ToolCall` values in index order. A call cut mid-stream keeps the arguments it got: its
``arguments_valid`` is False; nothing here completes or repairs JSON.

The same class folds the events back into calls on the consumer's side: feed it ``ToolCallStarted`` and
``ToolCallArgumentsDelta`` (``feed(e.index, e.id, e.name)`` / ``feed(e.index, arguments=e.text)``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ..errors import ValidationError
from ._messages import ToolCall

__all__ = ["ToolCallAccumulator", "ToolCallArgumentsDelta", "ToolCallFinished", "ToolCallStarted"]


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The model began a tool call. ``id`` is None when the server has not sent it yet (the finished call
    carries the one it sent later, or one made up here when it never did)."""

    index: int
    id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArgumentsDelta:
    """A fragment of the call's arguments, in order; joined, the fragments are ``ToolCall.arguments``."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """The call is complete (the stream finished): sent in index order, before ``UsageReport`` and ``Finish``."""

    index: int
    call: ToolCall


ToolCallEvent = ToolCallStarted | ToolCallArgumentsDelta


@dataclass(slots=True)
class _Pending:
    id: str | None = None
    name: str = ""
    started: bool = False
    #: fragments that came before the name: held until the call can be announced
    held: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


class ToolCallAccumulator:
    """Collects the streamed pieces of any number of tool calls (see the module docstring)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, _Pending] = {}

    def __bool__(self) -> bool:
        """True once any piece of a call arrived."""
        return bool(self._calls)

    def feed(
        self, index: int, id: str | None = None, name: str | None = None, arguments: str | None = None
    ) -> list[ToolCallEvent]:
        """One streamed piece of call ``index``; returns the events it gives (often none or one).

        The first non-empty id and name win: a repeat is ignored, as is a different value sent later (the
        call was announced under the first). Argument fragments are never dropped or reordered."""
        if type(index) is not int or index < 0:
            raise ValidationError(f"a tool call delta's index must be an int >= 0, got {index!r}")
        for what, value in (("id", id), ("name", name), ("arguments", arguments)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"tool call {index}: the {what} must be text, got {type(value).__name__}")
        pending = self._calls.get(index)
        if pending is None:
            pending = self._calls[index] = _Pending()
        if id and pending.id is None:
            pending.id = id
        if name and not pending.name:
            pending.name = name
        events: list[ToolCallEvent] = []
        if not pending.started:
            if arguments:
                pending.held.append(arguments)
            if not pending.name:
                return events
            pending.started = True
            events.append(ToolCallStarted(index, pending.id, pending.name))
            if pending.held:
                text = "".join(pending.held)
                pending.held.clear()
                pending.arguments.append(text)
                events.append(ToolCallArgumentsDelta(index, text))
            return events
        if arguments:
            pending.arguments.append(arguments)
            events.append(ToolCallArgumentsDelta(index, arguments))
        return events

    def calls(self) -> list[ToolCall]:
        """The calls so far, in index order: complete ones at the end of a stream, partial ones after a cut
        (their ``arguments_valid`` is then usually False). A call whose name never came is left out: there
        is nothing to run, and :meth:`nameless` says which."""
        out: list[ToolCall] = []
        for index in sorted(self._calls):
            pending = self._calls[index]
            if not pending.name:
                continue
            if pending.id is None:  # some servers send no id; the tool message must still name the call
                pending.id = f"call_{uuid.uuid4().hex[:24]}"
            out.append(ToolCall(pending.id, pending.name, "".join(pending.arguments)))
        return out

    def nameless(self) -> list[int]:
        """Indexes of calls that got pieces but never a function name."""
        return sorted(index for index, pending in self._calls.items() if not pending.name)

    def finished(self) -> list[ToolCallFinished]:
        """The end of a stream: one event per call, in index order."""
        calls = self.calls()
        indexes = [i for i in sorted(self._calls) if self._calls[i].name]
        return [ToolCallFinished(index, call) for index, call in zip(indexes, calls, strict=True)]
