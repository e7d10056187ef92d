"""Runs: chat turns owned by the service, not by the request that started them.

A run is an asyncio task holding one ``LLMAgent`` turn with its ``PersistencePlugin``; HTTP responses only
follow it. Its id is the id of the reply row it writes (a handler that runs before the plugin names the
reply), so any process can find what it saved. While it lives, its deltas are kept here (they are the reply
being written anyway); the database has them once it is checkpointed or done. When a follower on another
process asks (a ``watch`` on the control channel), the owner publishes the run's events through the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..entities import Message, Session
from ..errors import MofaError, PersistenceError, SessionBusyError, UnsavedReplyError
from ..ids import uuid7
from ..llm import ChatMessage, EventHandler, LLMAgent, LLMAgentBuilder, Turn
from ..persistence import PersistencePlugin, Store
from ._agents import AgentChooser
from ._config import ServeConfig
from ._errors import ApiError
from ._log import Event, find_call, terminal_event
from ._notify import LocalBus, event_messages

__all__ = ["Principal", "Run", "RunRegistry"]

log = logging.getLogger("mofa_sdk.server")

OnDisconnect = Literal["continue", "cancel"]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: from its API key."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    key_id: uuid.UUID


class Run:
    """One turn and its event log while it lives in this process."""

    def __init__(self, principal: Principal, session_id: uuid.UUID) -> None:
        self.id = uuid7()
        self.tenant_id = principal.tenant_id
        self.user_id = principal.user_id
        self.session_id = session_id
        self.user_message_id: uuid.UUID | None = None
        self.parts: list[str] = []
        self.terminal: Event | None = None
        #: True once a follower on another process asked for this run's events
        self.watched = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self.cancel_requested = False
        #: the provider's finish reason ("stop", "length" …) once the run ended
        self.finish_reason: str | None = None

    def __repr__(self) -> str:
        return f"<Run {self.id} session={self.session_id} {self.status} events={len(self.parts)}>"

    @property
    def status(self) -> str:
        return "streaming" if self.terminal is None else str(self.terminal.data["status"])

    def owned_by(self, principal: Principal) -> bool:
        return self.tenant_id == principal.tenant_id and self.user_id == principal.user_id

    def events_after(self, after: int) -> list[Event]:
        out = [Event(i + 1, "delta", {"text": t}) for i, t in enumerate(self.parts[after:], start=after)]
        if self.terminal is not None and after < self.terminal.n:
            out.append(self.terminal)
        return out

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_change(self, seconds: float) -> None:
        """Until the log grows or the run ends, at most ``seconds``."""
        if self.terminal is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), seconds)

    async def wait_finished(self, seconds: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), seconds)
        return self._finished.is_set()

    def cancel(self) -> None:
        """The explicit stop: the turn is cancelled and its reply saved as ``cancelled``."""
        if self.terminal is None and self.task is not None and not self.cancel_requested:
            self.cancel_requested = True
            self.task.cancel()


class _NameReply(EventHandler):
    """Runs before the persistence plugin: the reply row gets the run's id, the user row the request."""

    def __init__(self, run: Run, request_params: dict[str, Any] | None = None) -> None:
        self.run = run
        self.request_params = request_params

    async def before_call(self, turn: Turn) -> None:
        turn.reply_id = self.run.id
        turn.request_params = self.request_params


class _Started(EventHandler):
    """Runs after the persistence plugin: the user message is saved, the provider is about to be called."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def before_call(self, turn: Turn) -> None:
        self.run.user_message_id = turn.user_message_id
        if not self.run.started.done():
            self.run.started.set_result(None)


class RunRegistry:
    """The runs of this process, the control messages from others, and their heartbeats."""

    def __init__(self, store: Store, bus: LocalBus, chooser: AgentChooser, config: ServeConfig) -> None:
        self.store = store
        self.bus = bus
        self.chooser = chooser
        self.config = config
        self.runs: dict[uuid.UUID, Run] = {}
        self._live_sessions: dict[uuid.UUID, Run] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        #: plugins holding replies whose final write failed (``plugin.pending``): retried until they land
        self.unsaved: list[PersistencePlugin] = []
        self._retrying: asyncio.Task[None] | None = None
        bus.on_control = self._on_control

    def start(self) -> None:
        if self.bus.cross_process:
            self._heartbeat = asyncio.create_task(self._beat())

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._retrying is not None:
            self._retrying.cancel()
        live = [r for r in self.runs.values() if r.terminal is None and r.task is not None]
        if live:
            await asyncio.wait([r.task for r in live if r.task], timeout=self.config.shutdown_grace_seconds)
            for r in live:
                r.cancel()
            await asyncio.gather(*(r.task for r in live if r.task), return_exceptions=True)
        await self.flush_unsaved()
        if self.unsaved:
            log.error("%d replies could not be saved before shutdown", sum(len(p.pending) for p in self.unsaved))

    # -- starting --------------------------------------------------------------------------------------
    async def start_run(
        self, principal: Principal, session: Session, content: str, agent_code: str | None, *,
        messages: Sequence[ChatMessage] | None = None,
        configure: Callable[[LLMAgentBuilder], object] | None = None,
        request_params: dict[str, Any] | None = None,
    ) -> Run:
        """Start a turn on ``session``; returns once the user message is saved (or raises, nothing written).

        ``messages``: the request to send instead of the window (``LLMAgent.chat_stream(messages=…)``: a
        client that keeps its own context); ``configure``: applied to the turn's builder (model, params);
        ``request_params``: saved with the user message (``Message.request_params``).
        """
        if session.id in self._live_sessions:
            busy = self._live_sessions[session.id]
            raise SessionBusyError(f"session {session.id} has a reply streaming (run {busy.id})")
        await self._check_not_streaming_elsewhere(principal, session.id)
        builder, config = await self.chooser.builder(principal.tenant_id, session, agent_code)
        run = Run(principal, session.id)
        plugin = PersistencePlugin(
            "mofa-serve", self.store, principal.user_id, principal.tenant_id,
            config.agent.id if config is not None else None, session.id,
            checkpoint_interval=self.config.checkpoint_interval, record_delta_offsets=True,
        )
        builder.with_event_handler(_NameReply(run, request_params)).with_persistence_plugin(plugin)
        builder.with_event_handler(_Started(run))
        builder.with_user(principal.user_id).with_tenant(principal.tenant_id)
        builder.with_max_reply_chars(self.config.max_reply_chars)
        if configure is not None:
            configure(builder)
        self._live_sessions[session.id] = run
        try:
            agent = await builder.build_async()
        except BaseException:
            self._live_sessions.pop(session.id, None)
            raise
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._execute(run, agent, plugin, content, messages,
                                                 owns_provider=config is not None))
        try:
            await asyncio.shield(run.started)
        except BaseException:
            self.runs.pop(run.id, None)
            raise
        return run

    async def _check_not_streaming_elsewhere(self, principal: Principal, session_id: uuid.UUID) -> None:
        """Another process may be streaming on this session: its reply row says so (until its lease ends)."""
        if not self.bus.cross_process:
            return
        for m in await self.store.get_last_messages(principal.tenant_id, session_id, 2):
            if m.role == "assistant" and m.status == "streaming":
                raise SessionBusyError(f"session {session_id} has a reply streaming (run {m.id})")

    async def _execute(
        self, run: Run, agent: LLMAgent, plugin: PersistencePlugin, content: str,
        messages: Sequence[ChatMessage] | None, *, owns_provider: bool
    ) -> None:
        stream = agent.chat_stream(content, session_id=run.session_id, messages=messages)
        failure: BaseException | None = None
        try:
            async for delta in stream:
                self._push(run, delta)
        except asyncio.CancelledError:
            pass  # saved as cancelled by the plugin; the stream's status says so
        except Exception as exc:
            failure = exc
            if isinstance(exc, UnsavedReplyError):
                self._keep_unsaved(plugin)
            elif not isinstance(exc, MofaError):
                log.exception("run %s failed", run.id)
        finally:
            if not run.started.done():  # the turn never reached the provider: nothing to follow
                run.started.set_exception(failure or ApiError(503, "the service stopped this turn before it started"))
                run.started.exception()  # retrieved: no "never retrieved" warning when nobody awaits
                self._live_sessions.pop(run.session_id, None)
                self.runs.pop(run.id, None)
                run._finished.set()
            else:
                await self._finish(run, stream.status or "error", failure, stream)
            if owns_provider:
                with contextlib.suppress(Exception):
                    await agent.aclose()

    # -- replies whose final write failed -----------------------------------------------------------------
    def _keep_unsaved(self, plugin: PersistencePlugin) -> None:
        """The plugin keeps the reply in memory (``pending``); a run's plugin sees no next turn to flush it
        before, so the registry retries until the database takes it."""
        if plugin.pending and plugin not in self.unsaved:
            self.unsaved.append(plugin)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry_unsaved())

    async def flush_unsaved(self) -> int:
        """Write what the plugins hold; returns how many replies were written now."""
        written = 0
        for plugin in list(self.unsaved):
            try:
                written += await plugin.flush()
            except PersistenceError as exc:
                log.warning("a reply kept after a failed write is still unsaved: %s", exc)
                continue
            self.unsaved.remove(plugin)
        return written

    async def _retry_unsaved(self) -> None:
        while self.unsaved:
            await asyncio.sleep(self.config.unsaved_retry_seconds)
            await self.flush_unsaved()

    def _push(self, run: Run, delta: str) -> None:
        run.parts.append(delta)
        if run.watched:
            for message in event_messages([(len(run.parts), delta)]):
                self.bus.publish(run.id, message)
        run._signal()

    async def _finish(self, run: Run, status: str, failure: BaseException | None, stream: Any) -> None:
        n = len(run.parts) + 1
        reply_id = run.id if run.parts else None
        call = None
        if not isinstance(failure, UnsavedReplyError):
            with contextlib.suppress(MofaError, asyncio.CancelledError):
                call = await find_call(self.store, _probe_row(run)) if reply_id else None
        if isinstance(failure, UnsavedReplyError):
            term = terminal_event(n, "error", user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  code="unsaved_reply", message=str(failure))
        elif status == "error":
            err = stream.error or failure
            term = terminal_event(n, "error", user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  call=call, code=getattr(err, "code", "error"), message=str(err))
        else:
            term = terminal_event(n, status, user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  call=call)
            if call is None and stream.usage is not None:
                u = stream.usage
                term.data["usage"] = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                                      "total_tokens": u.total_tokens, "estimated": u.estimated}
        run.terminal = term
        run.finish_reason = stream.finish_reason
        self._live_sessions.pop(run.session_id, None)
        if run.watched:
            self.bus.publish(run.id, {"k": "end", "n": term.n, "kind": term.kind, "data": term.data})
        run._signal()
        run._finished.set()
        asyncio.get_running_loop().call_later(self.config.finished_run_seconds, self.runs.pop, run.id, None)

    # -- other processes -------------------------------------------------------------------------------
    def _on_control(self, message: dict[str, Any]) -> None:
        try:
            run = self.runs.get(uuid.UUID(str(message.get("run"))))
        except ValueError:
            return
        if run is None:
            return
        # a run is only ever shown or stopped for its own tenant and user
        if str(run.tenant_id) != message.get("tenant") or str(run.user_id) != message.get("user"):
            return
        op = message.get("op")
        after = message.get("after")
        if op == "cancel":  # the canceller only waits for the end (and a heartbeat meanwhile)
            run.cancel()
            after = len(run.parts)
        elif op != "watch":
            return
        run.watched = True
        after = after if isinstance(after, int) and after >= 0 else 0
        events = [(i + 1, t) for i, t in enumerate(run.parts[after:], start=after)]
        for m in event_messages(events):
            self.bus.publish(run.id, m)
        self.bus.publish(run.id, {"k": "hb", "n": len(run.parts)})
        if run.terminal is not None:
            t = run.terminal
            self.bus.publish(run.id, {"k": "end", "n": t.n, "kind": t.kind, "data": t.data})

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            for run in list(self.runs.values()):
                if run.watched and run.terminal is None:
                    self.bus.publish(run.id, {"k": "hb", "n": len(run.parts)})


def _probe_row(run: Run) -> Message:
    """Enough of the reply row to look its api call up by."""
    return Message(id=run.id, session_id=run.session_id, tenant_id=run.tenant_id, user_id=run.user_id,
                   role="assistant", content="")


async def cancel_run(registry: RunRegistry, principal: Principal, run_id: uuid.UUID) -> tuple[str, bool] | None:
    """Stop run ``run_id`` wherever it runs; returns its status once it ended and whether this call stopped
    it, or None when this tenant and user have no such run."""
    run = registry.runs.get(run_id)
    if run is not None:
        if not run.owned_by(principal):
            return None
        was_live = run.terminal is None
        run.cancel()
        await run.wait_finished(registry.config.shutdown_grace_seconds)
        return run.status, was_live and run.status == "cancelled"
    store, bus, config = registry.store, registry.bus, registry.config
    sub = bus.subscribe(run_id) if bus.cross_process else None
    try:
        row = await store.get_message(principal.tenant_id, run_id)
        if row is not None and (row.role != "assistant" or row.user_id != principal.user_id):
            return None
        if row is not None and row.status in ("complete", "cancelled", "error"):
            return row.status, False
        if sub is None:  # one process, and it does not hold the run: its process died
            return (None if row is None else ("interrupted", False))
        bus.control({"op": "cancel", "run": str(run_id), "tenant": str(principal.tenant_id),
                     "user": str(principal.user_id)})
        deadline = time.monotonic() + config.probe_seconds
        heard = False
        while time.monotonic() < deadline or heard:
            wait = config.owner_timeout_seconds if heard else max(0.05, deadline - time.monotonic())
            message = await sub.get(wait)
            if message is None:
                if heard or sub.overflowed:
                    break
                continue
            heard = True
            if message.get("k") == "end":
                return str(message["data"]["status"]), message["data"]["status"] == "cancelled"
        row = await store.get_message(principal.tenant_id, run_id)
        if row is None:
            return None
        return ("interrupted", False) if row.status not in ("complete", "cancelled", "error") else (row.status, False)
    finally:
        if sub is not None:
            sub.close()
