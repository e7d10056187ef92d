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
from collections.abc import AsyncIterator
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
from ...ids import uuid7
from ...llm import (
    EventHandler,
    LLMProvider,
    StreamLimits,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from ...llm import ToolResultEvent as ToolAnswered
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
from ._events import (
    ApiCallFacts,
    TerminalEvent,
    TextDeltaEvent,
    ToolArgumentsEvent,
    ToolCallDoneEvent,
    ToolCallStartedEvent,
    ToolEvent,
    ToolResultEvent,
    Usage,
    terminal_event,
)
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
            client_answers_calls=True,  # a reply's calls are the API client's to answer, in its next request
        )
        self.runs: dict[uuid.UUID, Run] = {}
        self._live_sessions: dict[uuid.UUID, Run] = {}
        #: sessions whose turn is being opened (not a run yet): busy as well
        self._opening: set[uuid.UUID] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        #: runs whose claim on their session this process renews (``_renew``), until they release it
        self._held: dict[uuid.UUID, Run] = {}
        self._renewing: asyncio.Task[None] | None = None
        #: set when the process is told to stop (SIGTERM): new turns are refused, live runs get the grace
        self.stopping = asyncio.Event()
        #: set once every run of this process has ended after ``stopping`` (followers then end too)
        self.drained = asyncio.Event()
        self._draining: asyncio.Task[None] | None = None
        #: plugins holding replies whose final write failed (``plugin.pending``): retried until they land
        self.unsaved: list[PersistencePlugin] = []
        self._retrying: asyncio.Task[None] | None = None
        #: handlers every run carries after its own (the service's metrics)
        self.handlers: tuple[EventHandler, ...] = ()
        bus.on_control = self._on_control

    def start(self) -> None:
        if self.bus.cross_process:
            self._heartbeat = asyncio.create_task(self._beat())
        self._renewing = asyncio.create_task(self._renew())

    def begin_shutdown(self) -> None:
        """The process is told to stop (SIGTERM, before the server waits for its connections): new turns
        are refused (503), live runs get ``shutdown_grace_seconds`` to finish, then are cancelled (saved as
        such), so that every follower of this process gets its terminal event before its stream closes."""
        if self._draining is None:
            self.stopping.set()
            self._draining = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        live = [r for r in self.runs.values() if r.terminal is None and r.task is not None]
        if live:
            await asyncio.wait([r.task for r in live if r.task], timeout=self.config.shutdown_grace_seconds)
            for r in live:
                r.cancel()
            await asyncio.gather(*(r.task for r in live if r.task), return_exceptions=True)
        self.drained.set()

    async def close(self) -> None:
        self.begin_shutdown()
        assert self._draining is not None
        await self._draining
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._renewing is not None:
            self._renewing.cancel()
        if self._retrying is not None:
            self._retrying.cancel()
        await self.flush_unsaved()
        if self.unsaved:
            log.error("%d replies could not be saved before shutdown", sum(len(p.pending) for p in self.unsaved))
        await self.engine.aclose()

    # -- starting --------------------------------------------------------------------------------------
    async def start_run(
        self, principal: Principal, session: Session | uuid.UUID | None, content: str | None,
        settings: SettingsRequest | None = None, options: TurnOptions | None = None,
    ) -> Run:
        """Start a turn through the turn engine; returns once the user message is saved (or raises, with
        nothing written).

        ``session``: a row the caller read with the owner check, an id (read here; one nobody holds is a
        new session under it), or None for a new session. A new session is written with the user message,
        in one transaction. ``settings``: what the session is asked to run with (recorded on it);
        ``options``: this turn's own (its earlier messages, request parameters, overrides). ``content``
        None: the turn's new input is the tool results ending ``options.earlier``."""
        if self.stopping.is_set():
            raise ServiceUnavailableError("this process is stopping; send the turn to another",
                                          code="shutting_down")
        known = session.id if isinstance(session, Session) else session
        if known is not None:
            busy = self._live_sessions.get(known)
            if busy is not None or known in self._opening:
                what = f" (run {busy.id})" if busy is not None else ""
                raise SessionBusyError(f"session {known} has a reply streaming{what}")
            self._opening.add(known)
        try:
            opened = await self.engine.open(principal.tenant_id, principal.user_id, session, settings,
                                            create_with_turn=True)
        finally:
            if known is not None:
                self._opening.discard(known)
        run = Run(principal, opened.session_id)
        o = options or TurnOptions()
        run.request_params = o.request_params
        # the session is claimed for the run in the transaction of its user message (SessionBusyError,
        # nothing written, when another turn holds it): the database decides, for every process
        o = replace(o, reply_id=run.id, handlers=(*o.handlers, RunHooks(run)),
                    claim_seconds=self.config.streaming_lease_seconds)
        try:
            started = opened.start(content, replace(o, handlers=(*o.handlers, *self.handlers)))
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
        if run.terminal is None:
            self._held[run.id] = run
        return run

    # -- session leases ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def holding(self, principal: Principal, session_id: uuid.UUID) -> AsyncIterator[None]:
        """Hold the session for a change that must never meet a live turn (a delete, an insert of items):
        claimed as a turn claims it (SessionBusyError while a turn of any process holds it), released after.
        A session that does not exist is no error here: the change finds that out itself."""
        hold = uuid7()
        await self.store.claim_session(principal.tenant_id, session_id, hold, self.config.streaming_lease_seconds)
        try:
            yield
        finally:
            with contextlib.suppress(MofaError):
                await self.store.release_session(principal.tenant_id, session_id, hold)

    async def _release(self, run: Run) -> None:
        """The turn is over (its reply written): the session is free for the next one, before any follower
        hears the end. A failed release is harmless: the lease runs out by itself."""
        self._held.pop(run.id, None)
        try:
            await self.store.release_session(run.tenant_id, run.session_id, run.id)
        except MofaError as exc:
            log.warning("releasing session %s failed (its lease runs out by itself): %s", run.session_id, exc)

    async def _reclaim(self, run: Run) -> None:
        """A live run whose lease was not renewed: this process could not renew it for longer than the lease
        (a database outage) and the session was freed meanwhile. It claims it again; if another turn holds
        it now (or the session is gone), the run is cancelled: one turn per session."""
        try:
            if await self.store.claim_session(run.tenant_id, run.session_id, run.id,
                                              self.config.streaming_lease_seconds):
                log.warning("run %s claimed its session %s again after its lease ran out", run.id, run.session_id)
                return
        except SessionBusyError:
            pass
        except MofaError as exc:
            log.warning("claiming session %s again failed: %s", run.session_id, exc)
            return  # the next heartbeat tries again
        log.warning("run %s lost its session %s to another turn; cancelling it", run.id, run.session_id)
        self._held.pop(run.id, None)
        run.cancel()

    async def _renew(self) -> None:
        """One statement per interval renews the lease of every live run of this process, whatever its
        provider is doing (a run not renewed is claimed again, see ``_reclaim``); then the replies of leases
        that ran out elsewhere are marked ``interrupted``."""
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            held = list(self._held.values())
            if held:
                try:
                    renewed = await self.store.renew_session_leases(
                        [(r.tenant_id, r.id) for r in held], self.config.streaming_lease_seconds)
                except MofaError as exc:
                    log.warning("renewing %d session leases failed: %s", len(held), exc)
                    continue
                for run in held:
                    if run.id not in renewed and run.id in self._held and run.terminal is None:
                        await self._reclaim(run)
            try:
                # whoever notices a dead process's runs marks them (a few rows at most): a lease expired one
                # more lease ago, so that an owner back from a database outage renews its own first
                await self.store.sweep_expired_leases(older_than=self.config.streaming_lease_seconds)
            except MofaError as exc:
                log.warning("marking the runs of expired leases interrupted failed: %s", exc)

    async def _execute(self, run: Run, opened: TurnSession, started: StartedTurn) -> None:
        stream = started.stream
        failure: BaseException | None = None
        try:
            async for event in stream.events():
                if type(event) is TextDelta:  # nearly every event: nothing more is made of it
                    self._push(run, event.text)
                    continue
                tool = _tool_event(event)
                if tool is not None:
                    self._push_tool(run, tool)
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
                if not isinstance(failure, SessionBusyError):  # it may have claimed before it failed
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._release(run)
                self._live_sessions.pop(run.session_id, None)
                self.runs.pop(run.id, None)
                run._finished.set()
            else:
                with contextlib.suppress(asyncio.CancelledError):  # a late cancel must not skip the end
                    await self._release(run)
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

    def _push_tool(self, run: Run, event: ToolEvent) -> None:
        numbered = run.add_tool_event(event)
        if run.watched:
            for message in delta_messages([numbered]):
                self.bus.publish(run.id, message)
        run._signal()

    async def _finish(self, run: Run, status: str, failure: BaseException | None, started: StartedTurn) -> None:
        """The terminal event, from what the turn itself measured: the same facts its api-call row was just
        written with (nothing is read back)."""
        stream = started.stream
        n = len(run.parts) + 1
        # the reply row is written with the user message (PersistencePlugin(record_delta_offsets=True)), so it
        # exists also for a turn that ended before its first delta; a tool step replaced it, and only text
        # after the step writes it again
        reply_id = run.id if run.parts or (run.user_message_id is not None and not stream.steps) else None
        run.tool_calls = stream.tool_calls
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
        events = [e for e in run.events_after(after) if not isinstance(e, TerminalEvent)]
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


def _tool_event(event: object) -> ToolEvent | None:
    """The run log's event for a tool event of the turn (numbered when appended), None for the others."""
    if type(event) is ToolCallArgumentsDelta:
        return ToolArgumentsEvent(0, event.index, event.text)
    if type(event) is ToolCallStarted:
        return ToolCallStartedEvent(0, event.index, event.id, event.name)
    if type(event) is ToolCallFinished:
        c = event.call
        return ToolCallDoneEvent(0, event.index, c.id, c.name, c.arguments)
    if type(event) is ToolAnswered:
        m = event.message
        return ToolResultEvent(0, event.call.id, m.content, m.is_error)
    return None


async def cancel_run(registry: RunRegistry, principal: Principal, run_id: uuid.UUID) -> tuple[str, bool] | None:
    """Stop run ``run_id`` wherever it runs; returns its status once it ended and whether this call stopped
    it, or None when this tenant and user have no such run."""
    run = registry.runs.get(run_id)
    # another tenant's (or user's) run held here takes the path of a missing id, with the same work
    if run is not None and run.owned_by(principal):
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
