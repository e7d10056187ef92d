"""The run registry: the runs of this process, started, finished, retried and shown to other processes.

Every turn starts through the library's turn engine (``TurnEngine``): it chooses the agent and provider,
applies the session's recorded settings and the request's own, and writes the rows; a run only holds the
turn's stream and its event log. When a follower on another process asks (a ``watch`` on the control
channel), the owner publishes the run's events through the bus; a ``cancel`` from anywhere stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import replace

from ...entities import Session
from ...errors import (
    ConfigError,
    MofaError,
    PersistenceError,
    ServiceUnavailableError,
    SessionBusyError,
    UnsavedReplyError,
)
from ...llm import EventHandler, LLMProvider, StreamLimits
from ...persistence import (
    PersistencePlugin,
    SettingsRequest,
    StartedTurn,
    Store,
    TurnEngine,
    TurnOptions,
    TurnSession,
)
from .._config import ServeConfig
from ._bus import LocalBus
from ._events import ApiCallFacts, TextDeltaEvent, Usage, terminal_event
from ._log import FINAL_STATUSES
from ._messages import Control, Ended, Heartbeat, delta_messages
from ._run import Principal, Run, RunHooks

__all__ = ["RunRegistry", "cancel_run"]

log = logging.getLogger("mofa_sdk.server")


class _ServiceEngine(TurnEngine):
    """The turn engine of the service: no provider configured is the service's fault (a 503), not the
    request's."""

    @property
    def default_provider(self) -> LLMProvider:
        try:
            return super().default_provider
        except ServiceUnavailableError:
            raise
        except ConfigError as exc:
            raise ServiceUnavailableError(f"no LLM provider is configured for this service: {exc}",
                                          code="no_provider") from None


class RunRegistry:
    """The runs of this process, the control messages from others, and their heartbeats.

    ``provider``: the provider of turns that no agent row answers (None: the environment's, made on first
    use, as ``mofa chat`` picks it)."""

    def __init__(self, store: Store, bus: LocalBus, provider: LLMProvider | None, config: ServeConfig) -> None:
        self.store = store
        self.bus = bus
        self.config = config
        self.engine: TurnEngine = _ServiceEngine(
            store, provider=provider, plugin_id="mofa-serve", checkpoint_interval=config.checkpoint_interval,
            record_delta_offsets=True, limits=StreamLimits(max_reply_chars=config.max_reply_chars),
        )
        self.runs: dict[uuid.UUID, Run] = {}
        self._live_sessions: dict[uuid.UUID, Run] = {}
        #: sessions whose turn is being opened (not a run yet): busy as well
        self._opening: set[uuid.UUID] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        #: plugins holding replies whose final write failed (``plugin.pending``): retried until they land
        self.unsaved: list[PersistencePlugin] = []
        self._retrying: asyncio.Task[None] | None = None
        #: handlers every run carries after its own (the service's metrics)
        self.handlers: tuple[EventHandler, ...] = ()
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
        await self.engine.aclose()

    # -- starting --------------------------------------------------------------------------------------
    async def start_run(
        self, principal: Principal, session: Session | uuid.UUID | None, content: str,
        settings: SettingsRequest | None = None, options: TurnOptions | None = None,
    ) -> Run:
        """Start a turn through the turn engine; returns once the user message is saved (or raises, with
        nothing written).

        ``session``: a row the caller read with the owner check, an id (read here; one nobody holds is a
        new session under it), or None for a new session. A new session is written with the user message,
        in one transaction. ``settings``: what the session is asked to run with (recorded on it);
        ``options``: this turn's own (its earlier messages, request parameters, overrides)."""
        known = session.id if isinstance(session, Session) else session
        if known is not None:
            busy = self._live_sessions.get(known)
            if busy is not None or known in self._opening:
                what = f" (run {busy.id})" if busy is not None else ""
                raise SessionBusyError(f"session {known} has a reply streaming{what}")
            self._opening.add(known)
        try:
            if known is not None:
                await self._check_not_streaming_elsewhere(principal, known)
            opened = await self.engine.open(principal.tenant_id, principal.user_id, session, settings,
                                            create_with_turn=True)
        finally:
            if known is not None:
                self._opening.discard(known)
        run = Run(principal, opened.session_id)
        o = options or TurnOptions()
        run.request_params = o.request_params
        try:
            handlers = (*o.handlers, RunHooks(run), *self.handlers)
            started = opened.start(content, replace(o, reply_id=run.id, handlers=handlers))
        except BaseException:
            await opened.aclose()
            raise
        self._live_sessions[run.session_id] = run
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._execute(run, opened, started))
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

    async def _execute(self, run: Run, opened: TurnSession, started: StartedTurn) -> None:
        stream = started.stream
        failure: BaseException | None = None
        try:
            async for delta in stream:
                self._push(run, delta)
        except asyncio.CancelledError:
            pass  # saved as cancelled by the plugin; the stream's status says so
        except Exception as exc:
            failure = exc
            if isinstance(exc, UnsavedReplyError):
                self._keep_unsaved(opened.plugin)
            elif not isinstance(exc, MofaError):
                log.exception("run %s failed", run.id)
        finally:
            if not run.started.done():  # the turn never reached the provider: nothing to follow
                run.started.set_exception(failure or ServiceUnavailableError(
                    "the service stopped this turn before it started"))
                run.started.exception()  # retrieved: no "never retrieved" warning when nobody awaits
                self._live_sessions.pop(run.session_id, None)
                self.runs.pop(run.id, None)
                run._finished.set()
            else:
                await self._finish(run, stream.status or "error", failure, started)
            with contextlib.suppress(Exception):  # an agent row's provider is closed; the shared one is not
                await opened.aclose()

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
            for message in delta_messages([TextDeltaEvent(len(run.parts), delta)]):
                self.bus.publish(run.id, message)
        run._signal()

    async def _finish(self, run: Run, status: str, failure: BaseException | None, started: StartedTurn) -> None:
        """The terminal event, from what the turn itself measured: the same facts its api-call row was just
        written with (nothing is read back)."""
        stream = started.stream
        n = len(run.parts) + 1
        reply_id = run.id if run.parts else None
        u = stream.usage
        usage = None if u is None else Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.estimated)
        facts = None
        if started.api_call_id is not None and stream.latency_ms is not None:
            facts = ApiCallFacts(started.api_call_id, max(0, stream.latency_ms), stream.time_to_first_token_ms)
        if isinstance(failure, UnsavedReplyError):
            term = terminal_event(n, "error", user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  code="unsaved_reply", message=str(failure))
        elif status == "error":
            err = stream.error or failure
            term = terminal_event(n, "error", user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  api_call=facts, usage=usage, code=getattr(err, "code", "error"), message=str(err))
        else:
            term = terminal_event(n, status, user_message_id=run.user_message_id, assistant_message_id=reply_id,
                                  api_call=facts, usage=usage)
        run.terminal = term
        run.model = stream.model
        run.finish_reason = stream.finish_reason
        self._live_sessions.pop(run.session_id, None)
        if run.watched:
            self.bus.publish(run.id, Ended(term))
        run._signal()
        run._finished.set()
        asyncio.get_running_loop().call_later(self.config.finished_run_seconds, self.runs.pop, run.id, None)

    # -- other processes -------------------------------------------------------------------------------
    def _on_control(self, message: Control) -> None:
        run = self.runs.get(message.run_id)
        if run is None:
            return
        # a run is only ever shown or stopped for its own tenant and user
        if run.tenant_id != message.tenant_id or run.user_id != message.user_id:
            return
        after = message.after
        if message.op == "cancel":  # the canceller only waits for the end (and a heartbeat meanwhile)
            run.cancel()
            after = len(run.parts)
        run.watched = True
        events = [TextDeltaEvent(i + 1, t) for i, t in enumerate(run.parts[after:], start=after)]
        for m in delta_messages(events):
            self.bus.publish(run.id, m)
        self.bus.publish(run.id, Heartbeat(len(run.parts)))
        if run.terminal is not None:
            self.bus.publish(run.id, Ended(run.terminal))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            for run in list(self.runs.values()):
                if run.watched and run.terminal is None:
                    self.bus.publish(run.id, Heartbeat(len(run.parts)))


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
        if row is not None and row.status in FINAL_STATUSES:
            return row.status, False
        if sub is None:  # one process, and it does not hold the run: its process died
            return (None if row is None else ("interrupted", False))
        bus.control(Control("cancel", run_id, principal.tenant_id, principal.user_id))
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
            if isinstance(message, Ended):
                return message.event.status, message.event.status == "cancelled"
        row = await store.get_message(principal.tenant_id, run_id)
        if row is None:
            return None
        return ("interrupted", False) if row.status not in FINAL_STATUSES else (row.status, False)
    finally:
        if sub is not None:
            sub.close()
