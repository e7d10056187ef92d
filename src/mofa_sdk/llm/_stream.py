"""``ChatStream``: one turn of a conversation, consumed as an async iterator of text deltas.

The whole turn runs inside an async generator, so that the consumer's ``break`` (or the garbage
collection of an abandoned stream, through asyncio's async-generator finalizer) closes the provider's
stream at once and still records the partial reply. The stream object keeps only a weak reference to
that generator: a strong one would make a cycle and delay the finalizer until the next GC pass.

Every provider's events pass through here, so this is the provider boundary: text is repaired into valid
Unicode and usage checked (``_boundary``), and the turn is bounded by its ``StreamLimits`` (``_clock`` and
the size cap below).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType, TracebackType
from typing import Any

from ..errors import ProviderError, ReplyTooLargeError, StreamConsumedError, ToolRoundsExceededError
from ..ids import uuid7
from ._boundary import TextRepair, check_request, implausible_usage
from ._clock import TurnClock
from ._hooks import EventHandler
from ._loop import AgentEvent, OpenStep, StepFinished, ToolResultEvent, ToolRun, ToolStep
from ._messages import ToolCall, check_tool_sequence
from ._provider import ChatParams, Finish, LLMProvider, StreamStarted, TextDelta, UsageReport
from ._tokens import estimate_usage
from ._toolcalls import ToolCallArgumentsDelta, ToolCallFinished, ToolCallStarted
from ._tools import Tool
from ._tracing import TurnSpans, active, start_turn_spans
from ._types import ChatMessage, ReplyStatus, StreamLimits, Turn, TurnResult, Usage
from ._window import select_window, trim_history

__all__ = ["ChatStream", "SessionState", "TurnContext", "status_kept"]

log = logging.getLogger("mofa_sdk.llm")


@dataclass(eq=False)
class SessionState:
    """One session as an agent holds it: the history its window needs and the lock serializing turns."""

    id: uuid.UUID
    history: list[ChatMessage] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: False until its history was loaded (a session named in ``chat_stream(session_id=…)``)
    loaded: bool = True


@dataclass(frozen=True, eq=False)
class TurnContext:
    """What a turn needs from its agent."""

    provider: LLMProvider
    params: ChatParams
    handlers: tuple[EventHandler, ...]
    system_prompt: str
    window: int | None
    token_budget: int | None
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    #: loads a session's history (through the persistence plugin) the first time a turn uses it
    load_session: Callable[[SessionState], Awaitable[None]] | None = None
    limits: StreamLimits = field(default_factory=StreamLimits)
    #: the tools a windowed turn runs, by name (the agent's ``with_tools``)
    tools: Mapping[str, Tool] = field(default_factory=lambda: MappingProxyType({}))
    #: rounds of tool calls a turn may run before it ends with ``ToolRoundsExceededError``
    max_tool_rounds: int = 8


def _overrides(handler: object, hook: str) -> bool:
    return getattr(type(handler), hook, None) is not getattr(EventHandler, hook)


class ChatStream:
    """Returned by ``agent.chat_stream(text)`` (no ``await``). Iterate it once for the text deltas::

        async for text in agent.chat_stream("Hi"):
            print(text, end="", flush=True)

    Turns on one session are serialized: a second stream on a session whose turn is still running
    waits for it (so do not start one on the same session from inside the loop of the first).
    After the end, ``text``, ``usage``, ``latency_ms``, ``time_to_first_token_ms``,
    ``tokens_per_second``, ``finish_reason``, ``response_id``, ``status``, ``error`` and ``notes`` describe
    the turn.
    """

    def __init__(
        self, ctx: TurnContext, session: SessionState, user_text: str,
        messages: tuple[ChatMessage, ...] | None = None,
    ) -> None:
        self._ctx = ctx
        self._session = session
        self._user_text = user_text
        #: sent instead of the window and the user text (``chat_stream(messages=…)``)
        self._messages = messages
        self._gen_ref: weakref.ref[AsyncGenerator[Any, None]] | None = None
        self._started = False
        self._done = asyncio.Event()
        self._turn: Turn | None = None
        self.usage: Usage | None = None
        self.latency_ms: int | None = None
        self.time_to_first_token_ms: int | None = None
        self.tokens_per_second: float | None = None
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        #: the model that answered: the one asked for, unless the provider reported another
        self.model: str = ctx.params.model
        #: "complete", "cancelled" or "error" once the turn ended; None before
        self.status: ReplyStatus | None = None
        self.error: BaseException | None = None
        #: what was repaired or dropped at the provider boundary (see ``TurnResult.notes``)
        self.notes: list[str] = []
        #: the model calls of the turn that ended in tool calls, in order (the final reply is not one)
        self.steps: list[ToolStep] = []
        #: the calls the final reply makes, when they end the turn (``messages=``: its caller runs them)
        self.tool_calls: tuple[ToolCall, ...] = ()

    def __repr__(self) -> str:
        return f"<ChatStream session={self._session.id} status={self.status}>"

    @property
    def session_id(self) -> uuid.UUID:
        return self._session.id

    @property
    def text(self) -> str:
        """The reply so far; the full reply once the stream ended."""
        return self._turn.text if self._turn is not None else ""

    @property
    def done(self) -> bool:
        return self.status is not None

    # -- consuming ---------------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[str]:
        return self._start(typed=False)

    def events(self) -> AsyncIterator[AgentEvent]:
        """The turn as typed events instead of text (iterate one or the other, once): ``TextDelta``, the
        tool-call events as they stream, ``StepFinished`` after a model call that made calls (its message
        saved before any tool runs) and a ``ToolResultEvent`` per result as it arrives."""
        return self._start(typed=True)

    def _start(self, *, typed: bool) -> AsyncGenerator[Any, None]:
        if self._gen_ref is not None or self.status is not None:
            raise StreamConsumedError("this chat stream was already iterated; call agent.chat_stream() again")
        gen = self._run(typed)
        self._gen_ref = weakref.ref(gen)
        return gen

    async def text_async(self) -> str:
        """Consume what is left and return the full reply (raises what the stream raises)."""
        gen = self._gen_ref() if self._gen_ref is not None else None
        if gen is None and not self._started and self.status is None:
            gen = self._start(typed=False)
        if gen is not None:
            async for _ in gen:
                pass
        return self.text

    collect = text_async

    async def aclose(self) -> None:
        """Stop the turn (recorded as cancelled if it was still streaming) and wait until its finishing
        hooks, such as the persistence writes, are done. Idempotent."""
        gen = self._gen_ref() if self._gen_ref is not None else None
        if gen is not None:
            await gen.aclose()
        if self._started:
            await self._done.wait()
        elif self.status is None:  # closed before it started: nothing was sent, nothing is recorded
            self.status = "cancelled"
            self._gen_ref = None

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the turn ----------------------------------------------------------------------------------
    async def _run(self, typed: bool) -> AsyncGenerator[Any, None]:
        """The turn; yields text (``typed``: the :data:`AgentEvent` values). One generator for both, so that
        the text path pays for no wrapper."""
        ctx, session = self._ctx, self._session
        self._started = True
        handed_over = False  # True once the finishing task owns the lock and the done flag
        spans: TurnSpans | None = None  # None without a tracing SDK: then no span is made at all
        try:
            await session.lock.acquire()
        except BaseException as exc:
            self._end_without_turn("cancelled", exc)
            raise
        try:
            if not session.loaded and ctx.load_session is not None:
                await ctx.load_session(session)
            if self._messages is not None:
                system = [ChatMessage(role="system", content=ctx.system_prompt)] if ctx.system_prompt else []
                request = [*system, *self._messages]
            else:
                user = ChatMessage(role="user", content=self._user_text)
                request = select_window(
                    session.history, user, system_prompt=ctx.system_prompt, rounds=ctx.window,
                    token_budget=ctx.token_budget, count_tokens=ctx.provider.count_tokens,
                )
            check_request(request)  # before anything is saved or sent
            if any(m.tool_calls or m.role == "tool" for m in request):
                check_tool_sequence(request)  # a strict provider would answer 400: refuse it here
            turn = Turn(
                session_id=session.id, user_id=ctx.user_id, tenant_id=ctx.tenant_id, agent_id=ctx.agent_id,
                user_text=self._user_text, model=ctx.params.model, request=request,
            )
            spans = start_turn_spans(ctx.provider, turn)
            with active(spans):  # the user message's write is a child of the turn's span
                for handler in ctx.handlers:
                    await handler.before_call(turn)
        except BaseException as exc:
            if spans is not None:
                spans.end(None, exc)
            session.lock.release()
            self._end_without_turn("cancelled" if isinstance(exc, asyncio.CancelledError) else "error", exc)
            raise
        self._turn = turn
        on_delta = tuple(h for h in ctx.handlers if _overrides(h, "on_delta"))
        # the tools run here only for a windowed turn: a caller sending ``messages=`` runs its own. A windowed
        # turn answers every call (one naming no tool of the agent gets an error result), so that the
        # history it leaves is one a strict provider accepts
        tools = ctx.tools if self._messages is None else None
        usage: Usage | None = None
        first: float | None = None
        outcome: BaseException | None = None
        status: ReplyStatus = "complete"
        t0 = time.monotonic()
        events: AsyncIterator[object] | None = None
        repair = TextRepair()
        notes: list[str] = []
        limits = ctx.limits
        clock = TurnClock(limits, turn)
        size = 0
        calls: list[ToolCall] = []
        started_calls = 0
        #: the turn's messages before its final reply (tool steps and results), in order
        new: list[ChatMessage] = []
        open_step: OpenStep | None = None
        try:
            try:
                params = ctx.params
                while True:  # one model call per pass
                    if spans is not None:
                        spans.start_call(params, request)
                    events = ctx.provider.stream(request, params)
                    while True:
                        event = await clock.next(events)
                        if event is None:  # the provider's stream ended
                            text = repair.finish()
                        elif type(event) is TextDelta:
                            if not event.text:
                                continue
                            clock.saw_text()
                            text = repair.feed(event.text)
                        elif type(event) is ToolCallArgumentsDelta or type(event) is ToolCallStarted:
                            clock.saw_text()  # a call's arguments are the model's output too
                            started_calls += type(event) is ToolCallStarted
                            if typed:
                                yield event
                            continue
                        elif type(event) is ToolCallFinished:
                            calls.append(event.call)
                            if typed:
                                yield event
                            continue
                        elif type(event) is StreamStarted:
                            self.response_id = event.response_id or self.response_id
                            continue
                        elif type(event) is UsageReport:
                            usage = event.usage
                            why = implausible_usage(usage)
                            if why is not None:  # dropped: _result counts locally and marks it estimated
                                usage = None
                                notes.append(f"dropped the provider's implausible usage ({why}); counted locally")
                            continue
                        elif type(event) is Finish:
                            self.finish_reason = event.reason
                            self.response_id = event.response_id or self.response_id
                            self.model = event.model or self.model
                            continue
                        else:
                            continue
                        cap = limits.max_reply_chars
                        too_large = False
                        if cap is not None and size + len(text) > cap:
                            text, too_large = text[: cap - size], True
                        if text:
                            if first is None:
                                first = time.monotonic()
                            size += len(text)
                            turn.append(text)
                            yield TextDelta(text) if typed else text
                            if spans is None:
                                for handler in on_delta:
                                    await handler.on_delta(turn, text)
                            else:
                                with spans.active():  # a checkpoint's write is a child of the turn's span
                                    for handler in on_delta:
                                        await handler.on_delta(turn, text)
                        if too_large:
                            raise ReplyTooLargeError(
                                f"the reply reached its cap of {cap:,} characters; the rest was not read",
                                partial_text=turn.text,
                            )
                        if event is None:
                            break
                    await _close_events(events)
                    events = None
                    if not calls or tools is None:
                        break  # the final reply (or calls its caller runs: they end the turn)
                    # -- a tool step: saved before any of its tools runs, then the results as they come
                    notes += repair.notes()
                    step = ToolStep(turn.step, ChatMessage("assistant", turn.text, id=uuid7(), tool_calls=tuple(calls)),
                                    self._call_result(turn, request, "complete", usage, t0, first, time.monotonic(),
                                                      None, []))
                    self.steps.append(step)
                    new.append(step.message)
                    open_step = OpenStep(step)
                    if spans is not None:
                        spans.end_call(step.result)
                    with active(spans):
                        for handler in ctx.handlers:
                            hook = getattr(handler, "on_tool_calls", None)
                            if hook is not None:
                                await hook(turn, step)
                    open_step.saved = True
                    request = [*request, step.message]
                    if typed:
                        yield StepFinished(step)
                    if turn.step >= ctx.max_tool_rounds:
                        raise ToolRoundsExceededError(
                            f"the model still asked for tools ({', '.join(c.name for c in calls)}) after "
                            f"{ctx.max_tool_rounds} rounds of tool calls, the agent's limit "
                            "(with_max_tool_rounds); those calls were not run"
                        )
                    run = open_step.run = ToolRun(tools, calls)
                    while run.running:
                        for call, answer in await run.next():
                            new.append(answer)
                            with active(spans):
                                for handler in ctx.handlers:
                                    hook = getattr(handler, "on_tool_result", None)
                                    if hook is not None:
                                        await hook(turn, answer)
                            open_step.handed.add(call.id)
                            if typed:
                                yield ToolResultEvent(call, answer)
                    request = [*request, *run.in_call_order()]
                    open_step = None
                    # the next model call, with the results
                    turn.start_step()
                    if params.tool_choice not in (None, "auto", "none"):  # forced once, not every round
                        params = replace(params, tool_choice="auto")
                    clock.saw_text()
                    calls, usage, first, started_calls = [], None, None, 0
                    repair = TextRepair()
                    t0 = time.monotonic()
            except (GeneratorExit, asyncio.CancelledError) as exc:
                status, outcome = "cancelled", exc
            except Exception as exc:
                status, outcome = "error", exc
                if isinstance(exc, ProviderError) and not exc.partial_text:
                    exc.partial_text = turn.text
            finally:
                clock.close()
                # release the HTTP response (or the local generation) now, not when it is collected
                if events is not None:
                    await _close_events(events)
            end = time.monotonic()
            notes += repair.notes()
            if started_calls > len(calls) and open_step is None:
                notes.append(f"{started_calls - len(calls)} tool call(s) cut off mid-stream were neither run nor "
                             "saved")
            if notes:
                log.warning("turn %s: at the provider boundary, %s", turn.id, "; ".join(notes))
            ended_in_tools = open_step is not None
            final_calls = tuple(calls) if status == "complete" and not ended_in_tools else ()
            result = self._result(turn, request, status, usage, t0, first, end, outcome, notes, final_calls,
                                  ended_in_tools)
            hook = {"complete": "after_reply", "error": "on_error"}.get(status, "on_cancel")
            if spans is not None:
                spans.end_call(result)
            with active(spans):  # the final write runs as a child of the turn's span, and records its trace
                finish = asyncio.ensure_future(self._finish(hook, turn, result, new, open_step))
            if spans is not None:
                turn_spans = spans
                finish.add_done_callback(lambda _: turn_spans.end(result))
            handed_over = True
            # shielded: a second cancellation must not lose the persistence write
            hook_error = await asyncio.shield(finish)
        finally:
            if not handed_over:
                session.lock.release()
                self._done.set()
        if outcome is not None and not isinstance(outcome, GeneratorExit | asyncio.CancelledError):
            if hook_error is not None:
                raise hook_error from outcome
            raise outcome
        if hook_error is not None:
            if isinstance(outcome, asyncio.CancelledError):
                log.error("a finishing hook failed after a cancelled turn: %r", hook_error)
            else:
                raise hook_error
        if outcome is not None:
            raise outcome

    def _call_result(
        self, turn: Turn, request: Sequence[ChatMessage], status: ReplyStatus, usage: Usage | None,
        t0: float, first: float | None, end: float, error: BaseException | None, notes: list[str],
        tool_calls: tuple[ToolCall, ...] = (), ended_in_tools: bool = False,
    ) -> TurnResult:
        """The record of the model call that began at ``t0`` (its text is ``turn.text``)."""
        text = turn.text
        if usage is None:
            estimate = text + "".join(c.arguments for c in tool_calls or ())
            usage = estimate_usage(request, estimate, self._ctx.provider.count_tokens)
        tps = None
        if first is not None and usage.completion_tokens and end > first:
            tps = usage.completion_tokens / (end - first)
        return TurnResult(
            text=text, status=status, usage=usage, model=self.model, latency_ms=int((end - t0) * 1000),
            time_to_first_token_ms=int((first - t0) * 1000) if first is not None else None,
            tokens_per_second=tps, finish_reason=self.finish_reason, response_id=self.response_id,
            error=error if status == "error" else None, notes=notes, tool_calls=tool_calls,
            ended_in_tools=ended_in_tools,
        )

    def _result(
        self, turn: Turn, request: Sequence[ChatMessage], status: ReplyStatus, usage: Usage | None,
        t0: float, first: float | None, end: float, error: BaseException | None, notes: list[str],
        tool_calls: tuple[ToolCall, ...] = (), ended_in_tools: bool = False,
    ) -> TurnResult:
        result = self._call_result(turn, request, status, usage, t0, first, end, error, notes, tool_calls,
                                   ended_in_tools)
        self.usage = result.usage
        self.latency_ms = result.latency_ms
        self.time_to_first_token_ms = result.time_to_first_token_ms
        self.tokens_per_second = result.tokens_per_second
        self.status = status
        self.error = result.error
        self.notes = notes
        self.tool_calls = tool_calls
        return result

    async def _finish(
        self, hook: str, turn: Turn, result: TurnResult, new: list[ChatMessage], open_step: OpenStep | None,
    ) -> BaseException | None:
        """Answer the calls an interrupted step left open, keep what the user saw as history, run one
        finishing hook on every handler (all run even if one fails); release the session.
        Returns the first failure, to be raised to the consumer after the stream."""
        first_error: BaseException | None = None
        session = self._session
        try:
            if open_step is not None:
                why = ("cancelled: the turn was cancelled before this tool call finished"
                       if result.status == "cancelled" else
                       f"not run: the turn ended ({_reason(result.error)}) before this tool call finished")
                late, to_hand = await open_step.settle("cancelled" if result.status == "cancelled" else "error",
                                                       why)
                new.extend(late)
                for answer in to_hand:
                    for handler in self._ctx.handlers:
                        tool_hook = getattr(handler, "on_tool_result", None)
                        if tool_hook is None:
                            continue
                        try:
                            await tool_hook(turn, answer)
                        except Exception as exc:
                            first_error = first_error or exc
                            log.error("saving the result of an interrupted tool call failed: %r", exc)
            # what the user saw is history: the partial reply too, never an empty one
            # (with the stored ids when a persistence plugin saved them)
            history = [ChatMessage(role="user", content=turn.user_text, id=turn.user_message_id), *new]
            if status_kept(result):
                history.append(ChatMessage(role="assistant", content=result.text, status=result.status,
                                           id=turn.reply_id, tool_calls=result.tool_calls))
            session.history = trim_history([*session.history, *history], self._ctx.window)
            for handler in self._ctx.handlers:
                try:
                    await getattr(handler, hook)(turn, result)
                except Exception as exc:
                    if first_error is None:
                        first_error = exc
                    else:
                        log.error("%s hook of %r failed as well: %r", hook, handler, exc)
        finally:
            session.lock.release()
            self._done.set()
        if first_error is not None and self.error is None:
            self.error = first_error
        return first_error

    def _end_without_turn(self, status: ReplyStatus, exc: BaseException) -> None:
        self.status = status
        self.error = exc if status == "error" else None
        self._done.set()



def status_kept(result: TurnResult) -> bool:
    """Whether the final reply joins the history: a complete one (even empty), or any with text or calls."""
    return (result.status == "complete" and not result.ended_in_tools) or bool(result.text or result.tool_calls)


def _reason(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "an error"


async def _close_events(events: AsyncIterator[object]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception as exc:  # the turn is over either way: still record it
            log.warning("closing the provider stream failed: %r", exc)
