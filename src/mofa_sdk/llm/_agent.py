"""``LLMAgent``: streams conversations through a provider, one windowed history per session."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import Any

from ..entities import Session, SessionSettings, check_text
from ..errors import AgentError, ConfigError
from ..ids import parse_uuid, uuid7
from ._hooks import EventHandler, SessionBackend, SessionInfo
from ._provider import ChatParams, LLMProvider, ProviderDefaults
from ._stream import ChatStream, SessionState, TurnContext
from ._tools import Tool, ToolSpec
from ._types import ChatMessage, StreamLimits
from ._window import select_window, trim_history

__all__ = ["DEFAULT_MAX_TOOL_ROUNDS", "LLMAgent", "TurnOverrides"]

#: rounds of tool calls one turn may run (``LLMAgentBuilder.with_max_tool_rounds``)
DEFAULT_MAX_TOOL_ROUNDS = 8

_HOOKS = ("before_call", "on_delta", "after_reply", "on_error", "on_cancel")


@dataclass(frozen=True, slots=True)
class TurnOverrides:
    """What one turn sends differently from its agent; nothing of it is recorded on the session.
    None keeps the agent's."""

    temperature: float | None = None
    max_tokens: int | None = None
    #: the system prompt of this turn only (an API request's ``instructions``)
    system_prompt: str | None = None
    #: provider request fields, over the agent's own
    extra: Mapping[str, Any] | None = None
    #: the tools this turn declares (a caller that runs them itself: ``messages=``), instead of the agent's
    tools: Sequence[ToolSpec] | None = None
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
                              or not 0 <= t <= 2):
            raise ConfigError(f"temperature must be between 0 and 2, got {t!r}")
        m = self.max_tokens
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m <= 0):
            raise ConfigError(f"max_tokens must be a positive integer or None, got {m!r}")
        if self.system_prompt is not None:
            if not isinstance(self.system_prompt, str):
                raise ConfigError(f"the system prompt must be text, got {type(self.system_prompt).__name__}")
            check_text(self.system_prompt, "the system prompt")
        if self.extra is not None and not all(isinstance(k, str) for k in self.extra):
            raise ConfigError(f"extra request fields must have string keys, got {dict(self.extra)!r}")

    def apply(self, params: ChatParams) -> ChatParams:
        changes: dict[str, Any] = {}
        if self.temperature is not None:
            changes["temperature"] = float(self.temperature)
        if self.max_tokens is not None:
            changes["max_tokens"] = self.max_tokens
        if self.extra:
            changes["extra"] = {**params.extra, **self.extra}
        if self.tools is not None:
            changes["tools"] = tuple(self.tools)
        if self.tool_choice is not None:
            changes["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            changes["parallel_tool_calls"] = self.parallel_tool_calls
        return replace(params, **changes) if changes else params  # ChatParams checks the tools (ConfigError)


class LLMAgent:
    """An agent. Build it with :class:`LLMAgentBuilder`.

    One agent serves many sessions at once: each session has its own history and lock, so turns on one
    session run one after the other while different sessions stream concurrently. With a persistence
    plugin (a :class:`SessionBackend`) sessions are opened through it and every turn is saved; without one
    they live in memory. Either way the agent keeps only what its window can use.
    """

    def __init__(
        self,
        *,
        agent_id: uuid.UUID,
        name: str,
        provider: LLMProvider,
        params: ChatParams,
        system_prompt: str,
        window: int | None,
        token_budget: int | None,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        handlers: Sequence[EventHandler],
        backend: SessionBackend | None,
        session_id: uuid.UUID,
        history: Sequence[ChatMessage] = (),
        limits: StreamLimits | None = None,
        settings: SessionSettings | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    ) -> None:
        self._id = agent_id
        self._name = name
        self._provider = provider
        self._params = params
        self._system_prompt = system_prompt
        self._window = window
        self._token_budget = token_budget
        self._user_id = user_id
        self._tenant_id = tenant_id
        self._backend = backend
        #: what the session it was built for runs with, as its plugin recorded it (None: not recorded)
        self.settings = settings
        self._handlers = tuple(handlers)
        self._ctx = TurnContext(
            provider=provider, params=params, handlers=self._handlers, system_prompt=system_prompt,
            window=window, token_budget=token_budget, user_id=user_id, tenant_id=tenant_id, agent_id=agent_id,
            load_session=self._load if backend is not None else None,
            limits=limits or StreamLimits(),
            tools=MappingProxyType({t.name: t for t in params.tools if isinstance(t, Tool)}),
            max_tool_rounds=max_tool_rounds,
        )
        first = SessionState(session_id, trim_history(history, window))
        self._sessions: dict[uuid.UUID, SessionState] = {session_id: first}
        self._current = first
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"LLMAgent(name={self._name!r}, model={self.model!r}, provider={self._provider.name!r}, "
            f"session_id={self.session_id})"
        )

    # -- identity and configuration ----------------------------------------------------------------
    @property
    def id(self) -> uuid.UUID:
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @property
    def session_id(self) -> uuid.UUID:
        """The current session: where ``chat``/``chat_stream`` go when not told otherwise."""
        return self._current.id

    @property
    def user_id(self) -> uuid.UUID:
        return self._user_id

    @property
    def tenant_id(self) -> uuid.UUID:
        return self._tenant_id

    @property
    def model(self) -> str:
        return self._params.model

    @property
    def params(self) -> ChatParams:
        return self._params

    @property
    def provider(self) -> LLMProvider:
        return self._provider

    @property
    def system_prompt(self) -> str:
        return self._system_prompt

    @property
    def window(self) -> int | None:
        """How many past rounds the model sees (None: all)."""
        return self._window

    @property
    def token_budget(self) -> int | None:
        return self._token_budget

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The tools a turn runs when the model calls them (``with_tools``)."""
        return tuple(self._ctx.tools.values())

    @property
    def max_tool_rounds(self) -> int:
        return self._ctx.max_tool_rounds

    @property
    def limits(self) -> StreamLimits:
        """The idle timeout, turn timeout and reply size cap every turn runs under."""
        return self._ctx.limits

    @property
    def history(self) -> list[ChatMessage]:
        """Exactly what the next request of the current session carries before the new user message:
        the system prompt and the windowed rounds."""
        return select_window(
            self._current.history, None, system_prompt=self._system_prompt, rounds=self._window,
            token_budget=self._token_budget, count_tokens=self._provider.count_tokens,
        )

    # -- conversation ------------------------------------------------------------------------------
    def chat_stream(
        self,
        text: str,
        *,
        session_id: uuid.UUID | str | None = None,
        messages: Sequence[ChatMessage] | None = None,
        overrides: TurnOverrides | None = None,
        before: Sequence[EventHandler] = (),
        after: Sequence[EventHandler] = (),
    ) -> ChatStream:
        """Start a turn; iterate the result for text deltas (no ``await`` here). Nothing happens until the
        stream is iterated. A turn on a session that is busy waits until the running one has ended.

        ``messages``: send these (after the agent's system prompt) instead of the window and ``text``, for a
        proxy whose client keeps its own context (OpenAI Chat Completions). ``text`` is still the user
        message that is saved and joins the history; the window is neither read nor sent. They may hold
        tool calls and results (checked as a strict provider would); the model's calls then end the turn
        (``stream.tool_calls``, saved with the reply) and are not run: the caller runs its tools.
        ``overrides``: this turn's temperature, reply cap, system prompt or request fields.
        ``before`` / ``after``: event handlers of this turn only, run before / after the agent's own (a
        handler before the persistence plugin may name the reply: ``turn.reply_id``).
        """
        if self._closed:
            raise AgentError("this agent is closed")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"the user message must be non-empty text, got {text!r}")
        if messages is not None and not messages:
            raise ConfigError("messages, when given, must hold at least one message")
        session = self._current if session_id is None else self._session(parse_uuid(session_id, "session_id"))
        ctx = self._ctx
        if overrides is not None or before or after:
            for handler in (*before, *after):
                missing = [h for h in _HOOKS if not callable(getattr(handler, h, None))]
                if missing:
                    raise ConfigError(f"{handler!r} is not an event handler (missing {', '.join(missing)})")
            params, system = self._params, self._system_prompt
            if overrides is not None:
                params = overrides.apply(params)
                if isinstance(self._provider, ProviderDefaults):
                    params = self._provider.apply_defaults(params)
                if overrides.system_prompt is not None:
                    system = overrides.system_prompt
            ctx = replace(ctx, params=params, system_prompt=system, handlers=(*before, *self._handlers, *after))
        return ChatStream(ctx, session, text, None if messages is None else tuple(messages))

    async def chat(
        self, text: str, *, session_id: uuid.UUID | str | None = None, messages: Sequence[ChatMessage] | None = None
    ) -> str:
        """The whole reply at once (the same turn as ``chat_stream``, consumed here)."""
        return await self.chat_stream(text, session_id=session_id, messages=messages).text_async()

    # -- sessions ----------------------------------------------------------------------------------
    def _session(self, sid: uuid.UUID) -> SessionState:
        state = self._sessions.get(sid)
        if state is None:
            state = SessionState(sid, loaded=self._backend is None)
            self._sessions[sid] = state
        return state

    async def _load(self, state: SessionState) -> None:
        """Open ``state``'s session through the plugin (tenant-checked) and keep its window."""
        assert self._backend is not None
        sid, history = await self._backend.open_session(
            state.id, window=self._window, user_id=self._user_id, tenant_id=self._tenant_id, agent_id=self._id
        )
        if sid != state.id:  # a backend must not swap ids; refuse rather than write to another session
            raise AgentError(f"the session backend opened {sid} when asked for {state.id}")
        state.history = trim_history(history, self._window)
        state.loaded = True

    async def new_session(self) -> uuid.UUID:
        """Start a new session and make it current."""
        if self._backend is not None:
            sid, history = await self._backend.open_session(
                None, window=self._window, user_id=self._user_id, tenant_id=self._tenant_id, agent_id=self._id
            )
            state = SessionState(sid, trim_history(history, self._window))
        else:
            state = SessionState(uuid7())
        self._sessions[state.id] = state
        self._current = state
        return state.id

    async def switch_session(self, session_id: uuid.UUID | str) -> None:
        """Make ``session_id`` current: loaded through the plugin (created if new), or an empty in-memory
        session when there is no plugin. Not a UUID: ConfigError."""
        state = self._session(parse_uuid(session_id, "session_id"))
        if not state.loaded:
            async with state.lock:
                if not state.loaded:
                    await self._load(state)
        self._current = state

    async def list_sessions(self, *, limit: int = 50) -> list[SessionInfo]:
        """This user's sessions (newest first): from the store with a plugin, else those held in memory."""
        if self._backend is not None:
            return await self._backend.list_sessions(
                user_id=self._user_id, tenant_id=self._tenant_id, limit=limit
            )
        held = list(reversed(self._sessions))[:limit]  # dicts keep insertion (= creation) order
        return [
            Session(id=s, tenant_id=self._tenant_id, user_id=self._user_id, agent_id=self._id) for s in held
        ]

    # -- lifetime ----------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the provider and the persistence plugin. The plugin first tries to write the replies it
        still holds (``plugin.pending``), for at most its ``flush_timeout``, and logs a warning naming those
        it could not write. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._provider.aclose()
        finally:
            if self._backend is not None:
                await self._backend.close()

    async def __aenter__(self) -> LLMAgent:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
