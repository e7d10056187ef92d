"""An event handler that records every hook call of a turn (and can fail, veto or wait on cancel), and the
history of an agent as ``(role, content, status)`` rows: the LLM stream tests."""

from __future__ import annotations

import asyncio
from typing import Any

from mofa_sdk.errors import VetoedError
from mofa_sdk.llm import EventHandler, LLMAgent, Turn, TurnResult

__all__ = ["Recorder", "contents"]


class Recorder(EventHandler):
    """Records every hook call; optional failures and waits to steer a turn."""

    def __init__(self, name: str = "rec", log: list[tuple[Any, ...]] | None = None) -> None:
        self.name = name
        self.log: list[tuple[Any, ...]] = [] if log is None else log
        self.turns: list[Turn] = []
        self.results: list[TurnResult] = []
        self.veto = False
        self.fail_in: set[str] = set()
        self.cancel_gate: asyncio.Event | None = None
        self.cancel_finished = False
        self.cancel_entered = asyncio.Event()

    def _maybe_fail(self, hook: str) -> None:
        if hook in self.fail_in:
            raise RuntimeError(f"{self.name}.{hook} failed")

    async def before_call(self, turn: Turn) -> None:
        self.log.append((self.name, "before_call", turn.user_text))
        self.turns.append(turn)
        if self.veto:
            raise VetoedError("not allowed")
        self._maybe_fail("before_call")

    async def on_delta(self, turn: Turn, delta: str) -> None:
        self.log.append((self.name, "on_delta", delta, turn.text))
        self._maybe_fail("on_delta")

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        self.log.append((self.name, "after_reply", result.status, result.text))
        self.results.append(result)
        self._maybe_fail("after_reply")

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        self.log.append((self.name, "on_error", result.status, result.text, type(result.error).__name__))
        self.results.append(result)
        self._maybe_fail("on_error")

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        self.log.append((self.name, "on_cancel", result.status, result.text))
        self.results.append(result)
        self.cancel_entered.set()
        if self.cancel_gate is not None:
            await self.cancel_gate.wait()
        self.cancel_finished = True
        self._maybe_fail("on_cancel")


def contents(agent: LLMAgent) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in agent.history]
