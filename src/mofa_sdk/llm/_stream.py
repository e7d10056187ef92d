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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from ..errors import ProviderError, ReplyTooLargeError, StreamConsumedError
from ._boundary import TextRepair, check_request, implausible_usage
from ._clock import TurnClock
from ._hooks import EventHandler
from ._provider import ChatParams, Finish, LLMProvider, StreamStarted, TextDelta, UsageReport
from ._tokens import estimate_usage
from ._types import ChatMessage, ReplyStatus, StreamLimits, Turn, TurnResult, Usage
from ._window import select_window, trim_history

__all__ = ["ChatStream", "SessionState", "TurnContext"]

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
        self._gen_ref: weakref.ref[AsyncGenerator[str, None]] | None = None
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
        if self._gen_ref is not None or self.status is not None:
            raise StreamConsumedError("this chat stream was already iterated; call agent.chat_stream() again")
        gen = self._run()
        self._gen_ref = weakref.ref(gen)
        return gen

    async def text_async(self) -> str:
        """Consume what is left and return the full reply (raises what the stream raises)."""
        gen = self._gen_ref() if self._gen_ref is not None else None
        if gen is None and not self._started and self.status is None:
            gen = self.__aiter__()  # type: ignore[assignment]
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
    async def _run(self) -> AsyncGenerator[str, None]:
        ctx, session = self._ctx, self._session
        self._started = True
        handed_over = False  # True once the finishing task owns the lock and the done flag
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
            turn = Turn(
                session_id=session.id, user_id=ctx.user_id, tenant_id=ctx.tenant_id, agent_id=ctx.agent_id,
                user_text=self._user_text, model=ctx.params.model, request=request,
            )
            for handler in ctx.handlers:
                await handler.before_call(turn)
        except BaseException as exc:
            session.lock.release()
            self._end_without_turn("cancelled" if isinstance(exc, asyncio.CancelledError) else "error", exc)
            raise
        self._turn = turn
        on_delta = tuple(h for h in ctx.handlers if _overrides(h, "on_delta"))
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
        try:
            try:
                events = ctx.provider.stream(request, ctx.params)
                while True:
                    event = await clock.next(events)
                    if event is None:  # the provider's stream ended
                        text = repair.finish()
                    elif type(event) is TextDelta:
                        if not event.text:
                            continue
                        clock.saw_text()
                        text = repair.feed(event.text)
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
                        yield text
                        for handler in on_delta:
                            await handler.on_delta(turn, text)
                    if too_large:
                        raise ReplyTooLargeError(
                            f"the reply reached its cap of {cap:,} characters; the rest was not read",
                            partial_text=turn.text,
                        )
                    if event is None:
                        break
            except (GeneratorExit, asyncio.CancelledError) as exc:
                status, outcome = "cancelled", exc
            except Exception as exc:
                status, outcome = "error", exc
                if isinstance(exc, ProviderError) and not exc.partial_text:
                    exc.partial_text = turn.text
            finally:
                clock.close()
                # release the HTTP response (or the local generation) now, not when it is collected
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception as exc:  # the turn is over either way: still record it
                        log.warning("closing the provider stream failed: %r", exc)
            end = time.monotonic()
            notes = repair.notes() + notes
            if notes:
                log.warning("turn %s: at the provider boundary, %s", turn.id, "; ".join(notes))
            result = self._result(turn, request, status, usage, t0, first, end, outcome, notes)
            # what the user saw is history: the partial reply too, never an empty one
            # (with the stored ids when a persistence plugin saved them)
            new = [ChatMessage(role="user", content=turn.user_text, id=turn.user_message_id)]
            if status == "complete" or result.text:
                new.append(ChatMessage(role="assistant", content=result.text, status=status, id=turn.reply_id))
            session.history = trim_history([*session.history, *new], ctx.window)
            hook = {"complete": "after_reply", "error": "on_error"}.get(status, "on_cancel")
            finish = asyncio.ensure_future(self._finish(hook, turn, result))
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

    def _result(
        self, turn: Turn, request: Sequence[ChatMessage], status: ReplyStatus, usage: Usage | None,
        t0: float, first: float | None, end: float, error: BaseException | None, notes: list[str],
    ) -> TurnResult:
        text = turn.text
        if usage is None:
            usage = estimate_usage(request, text, self._ctx.provider.count_tokens)
        tps = None
        if first is not None and usage.completion_tokens and end > first:
            tps = usage.completion_tokens / (end - first)
        self.usage = usage
        self.latency_ms = int((end - t0) * 1000)
        self.time_to_first_token_ms = int((first - t0) * 1000) if first is not None else None
        self.tokens_per_second = tps
        self.status = status
        provider_error = error if status == "error" else None
        self.error = provider_error
        self.notes = notes
        return TurnResult(
            text=text, status=status, usage=usage, model=self.model, latency_ms=self.latency_ms,
            time_to_first_token_ms=self.time_to_first_token_ms, tokens_per_second=tps,
            finish_reason=self.finish_reason, response_id=self.response_id, error=provider_error, notes=notes,
        )

    async def _finish(self, hook: str, turn: Turn, result: TurnResult) -> BaseException | None:
        """Run one finishing hook on every handler (all run even if one fails); release the session.
        Returns the first failure, to be raised to the consumer after the stream."""
        first_error: BaseException | None = None
        try:
            for handler in self._ctx.handlers:
                try:
                    await getattr(handler, hook)(turn, result)
                except Exception as exc:
                    if first_error is None:
                        first_error = exc
                    else:
                        log.error("%s hook of %r failed as well: %r", hook, handler, exc)
        finally:
            self._session.lock.release()
            self._done.set()
        if first_error is not None and self.error is None:
            self.error = first_error
        return first_error

    def _end_without_turn(self, status: ReplyStatus, exc: BaseException) -> None:
        self.status = status
        self.error = exc if status == "error" else None
        self._done.set()

