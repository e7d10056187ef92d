"""``TurnClock``: the idle timeout and the turn timeout of one turn.

One timer per turn, not one per event: arming ``asyncio.timeout`` around every event cost more than the
rest of the stream layer together. The timer fires at the earliest moment a bound could run out; if text
came meanwhile it re-arms itself, and only while the turn is waiting on the provider does it cancel the
task. Never between waits: the consumer's code runs in the same task, and it must not be cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..errors import IdleTimeoutError, TurnTimeoutError
from ._types import StreamLimits, Turn

__all__ = ["TurnClock"]


class TurnClock:
    """Idle time is only time spent waiting on the provider since its last text (the consumer's time with a
    delta is not the provider's); the turn timeout is wall time since the clock was made."""

    __slots__ = (
        "_deadline", "_expired", "_idle", "_idle_used", "_loop", "_since", "_task", "_timer", "_turn",
        "_turn_timeout",
    )

    def __init__(self, limits: StreamLimits, turn: Turn) -> None:
        self._loop = asyncio.get_running_loop()
        self._turn = turn
        self._idle = limits.idle_timeout
        self._turn_timeout = limits.turn_timeout or 0.0
        self._deadline = None if limits.turn_timeout is None else self._loop.time() + limits.turn_timeout
        #: time spent waiting on the provider since its last text
        self._idle_used = 0.0
        #: when the current wait began; None between waits
        self._since: float | None = None
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: the error to raise once the timer has cancelled the task
        self._expired: IdleTimeoutError | TurnTimeoutError | None = None

    def saw_text(self) -> None:
        self._idle_used = 0.0

    async def next(self, events: AsyncIterator[object]) -> object | None:
        """The provider's next event, None at its end; IdleTimeoutError or TurnTimeoutError when a bound runs
        out first (the provider's stream is then cancelled, which closes it)."""
        now = self._loop.time()
        if self._deadline is not None and now >= self._deadline:
            raise self._error(idle=False)
        self._since = now
        self._task = asyncio.current_task(self._loop)
        # a bound never comes nearer than when the timer was armed: arm only when there is none
        if self._timer is None:
            due = self._due(now)
            if due is not None:
                self._timer = self._loop.call_at(due, self._fire)
        try:
            event = await anext(events)
        except StopAsyncIteration:
            event = None
        except asyncio.CancelledError:
            error = self._own_cancel()
            if error is not None:
                raise error from None
            raise
        finally:
            self._idle_used += self._loop.time() - now
            self._since = None
        if self._expired is not None:  # the provider swallowed the cancellation
            error = self._own_cancel()
            if error is not None:
                raise error
        return event

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self, since: float) -> float | None:
        """When the wait that began at ``since`` runs out."""
        due = self._deadline
        if self._idle is not None:
            idle_due = since + self._idle - self._idle_used
            due = idle_due if due is None else min(due, idle_due)
        return due

    def _fire(self) -> None:
        self._timer = None
        if self._since is None or self._task is None:
            return  # between waits: the next wait arms a new timer
        now = self._loop.time()
        due = self._due(self._since)
        if due is not None and now < due:  # text came since this timer was armed
            self._timer = self._loop.call_at(due, self._fire)
            return
        self._expired = self._error(idle=self._deadline is None or now < self._deadline)
        self._task.cancel()

    def _own_cancel(self) -> IdleTimeoutError | TurnTimeoutError | None:
        """The timer's error when the timer cancelled the task and no one else did too (that stays a
        cancellation); None when the timer did not fire."""
        error, self._expired = self._expired, None
        if error is None or self._task is None:
            return None
        return error if self._task.uncancel() == 0 else None

    def _error(self, *, idle: bool) -> IdleTimeoutError | TurnTimeoutError:
        text = self._turn.text
        if idle:
            return IdleTimeoutError(
                f"no reply text for {self._idle:g}s (keep-alives and empty deltas do not count); "
                "the stream was closed", partial_text=text,
            )
        return TurnTimeoutError(
            f"the turn ran past its {self._turn_timeout:g}s deadline; the stream was closed", partial_text=text
        )
