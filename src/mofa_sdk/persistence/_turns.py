"""The turn engine: how a session is answered, decided in one place for ``mofa chat``, ``mofa serve`` and the
library (DESIGN §6).

``TurnEngine.open`` reads the session once (with the owner check), chooses the agent and provider with one
chooser (an agent code asked for; else the agent the session recorded; else the engine's default provider,
made once and shared), and builds the agent whose persistence plugin adopts the row already read. The
session's settings (agent, provider, model, window, system prompt, reply cap) are settled by the one rule
of ``settle_settings`` and recorded with what changed, in one write, or with the session's creation.
``TurnSession.start`` starts a turn and hands back the stream with typed ids.

``mofa serve`` opens with ``create_with_turn=True``: a new session is then written with its first user
message (and the turn's earlier messages, an API request's input items), in one transaction, or not at all.

Tools a client declares (``TurnOptions.tools``) are sent to the provider and never run here: the model's
calls end the turn (saved on the reply, finish reason ``tool_calls``). The client answers them in a turn
whose new input is tool results and no user message (``start(None, TurnOptions(earlier=[tool messages]))``):
the results are checked against the calls of the session's last reply and written before the provider is
called, in one transaction.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..entities import AgentConfig, Message, Session, SessionSettings
from ..errors import (
    AgentUnavailableError,
    ConfigError,
    ModelUnavailableError,
    NotFoundError,
    TenantMismatchError,
    ValidationError,
)
from ..ids import uuid7
from ..llm import (
    ChatMessage,
    ChatParams,
    ChatStream,
    ContentPart,
    EventHandler,
    LLMAgent,
    LLMAgentBuilder,
    LLMProvider,
    OpenedSession,
    ProviderDefaults,
    Settle,
    StreamLimits,
    Tool,
    ToolSpec,
    Turn,
    TurnOverrides,
    check_tool_sequence,
    default_provider,
    provider_label,
    select_window,
)
from ._chat_rows import message_row, stored_parts
from ._plugin import PersistencePlugin
from ._sessions import find_session
from ._store import Store

__all__ = ["KEEP", "Keep", "SettingsRequest", "StartedTurn", "TurnEngine", "TurnOptions", "TurnSession"]


class Keep(enum.Enum):
    """A setting not asked for: the session keeps what it recorded (where None is a value)."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class SettingsRequest:
    """What a caller asks a session to be answered with; what it leaves at ``KEEP`` stays as the session
    recorded it (a new session: the agent's or the provider's default). A value given replaces the
    recorded one, and the change is recorded."""

    #: an agent row's code; None: no agent row (the engine's default provider)
    agent: str | Keep | None = KEEP
    #: None: the agent's (or provider's) own model
    model: str | Keep | None = KEEP
    system_prompt: str | Keep = KEEP
    #: past rounds sent; None: every round
    window: int | Keep | None = KEEP
    #: the cap on each reply's tokens; None: the agent's or provider's default
    max_tokens: int | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class TurnOptions:
    """One turn's own options; none of them is recorded on the session."""

    temperature: float | None = None
    max_tokens: int | None = None
    #: this turn's system prompt instead of the session's (an API request's ``instructions``)
    system_prompt: str | None = None
    #: provider request fields, over the agent's own
    extra: Mapping[str, Any] | None = None
    #: sent instead of the window and the text, for a client that keeps its own context (the text is
    #: still the user message saved)
    messages: Sequence[ChatMessage] | None = None
    #: the id the reply is stored under (``mofa serve`` names it after its run); None: a new one
    reply_id: uuid.UUID | None = None
    #: the API request that started the turn, saved with the user message (opaque to the library)
    request_params: dict[str, Any] | None = None
    #: event handlers of this turn, run after the agent's own (so after the user message is saved)
    handlers: Sequence[EventHandler] = ()
    #: messages of the session before this turn's user message (an API request's earlier input items):
    #: written with the user message in one transaction, and sent before it within the window (an ``id``
    #: given is the row's id). A TurnSession kept for later turns holds them once opened again. Tool
    #: results among them must answer the calls of the session's last reply (or of an assistant message
    #: before them here); a turn with no user message (``start(None, …)``) ends with them.
    earlier: Sequence[ChatMessage] = ()
    #: claim the session for this turn (``Store.claim_session``, the reply's id as the run) for this many
    #: seconds, in the transaction of its user message: a session another turn holds is SessionBusyError,
    #: with nothing written. None: no claim (the library alone); ``mofa serve`` claims and renews
    claim_seconds: float | None = None
    #: the user message's input parts beside its text (images), saved on its row and sent
    user_parts: Sequence[ContentPart] = ()
    #: tools the client declares: sent to the provider, never run here; a reply making calls ends the turn
    tools: Sequence[ToolSpec] = ()
    #: "auto", "none", "required" or the name of one of ``tools``; None sends none
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None


class _EnginePlugin(PersistencePlugin):
    """The engine's persistence plugin: a session opened to be created with its first turn is written with
    that turn's user message, and a turn's earlier messages with its user message, in one transaction.
    ``client_answers_calls``: see :class:`TurnEngine`."""

    def __init__(self, *args: Any, create_with_turn: bool = False, client_answers_calls: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_answers_calls = client_answers_calls
        self._create_with_turn = create_with_turn
        #: the new session, settled but not written yet
        self._unwritten: Session | None = None
        #: the earlier messages of a turn (by turn id), written with its user message
        self._earlier: dict[uuid.UUID, list[Message]] = {}
        #: the session claims of turns (by turn id: run id, lease seconds), taken with the user message
        self._claims: dict[uuid.UUID, tuple[uuid.UUID, float]] = {}
        #: turns whose new input is tool results: no user message is written (the last result stands in)
        self._no_user_message: set[uuid.UUID] = set()
        #: the input parts of a turn's user message (by turn id)
        self._user_parts: dict[uuid.UUID, Sequence[ContentPart]] = {}

    async def open_with_settings(
        self, session_id: uuid.UUID | None, *, settle: Settle, user_id: uuid.UUID, tenant_id: uuid.UUID,
        agent_id: uuid.UUID,
    ) -> OpenedSession:
        if not self._create_with_turn:
            return await super().open_with_settings(
                session_id, settle=settle, user_id=user_id, tenant_id=tenant_id, agent_id=agent_id
            )
        self._create_with_turn = False
        settings = settle(None)  # a refused setting raises here, with nothing written
        self._unwritten = Session(id=session_id or uuid7(), tenant_id=tenant_id, user_id=user_id,
                                  agent_id=agent_id, settings=settings)
        return OpenedSession(self._unwritten.id, [], settings, created=True)

    def write_with_user_message(self, turn: Turn, rows: list[Message], *, user_message: bool = True,
                                parts: Sequence[ContentPart] = ()) -> None:
        self._earlier[turn.id] = rows
        if not user_message:
            self._no_user_message.add(turn.id)
        if parts:
            self._user_parts[turn.id] = parts

    def claim_with_user_message(self, turn: Turn, run_id: uuid.UUID, seconds: float) -> None:
        self._claims[turn.id] = (run_id, seconds)

    async def _save_user_message(self, turn: Turn, message: Message) -> Message:
        earlier = self._earlier.pop(turn.id, [])
        claim = self._claims.pop(turn.id, None)
        parts = self._user_parts.pop(turn.id, ())
        if parts:
            message = message.model_copy(update={"parts": stored_parts(parts)})
        skip_user = turn.id in self._no_user_message
        self._no_user_message.discard(turn.id)
        new = self._unwritten if self._unwritten is not None and self._unwritten.id == turn.session_id else None
        if new is None and not earlier and claim is None:
            return await super()._save_user_message(turn, message)
        if skip_user:  # the last tool result stands in for the user message: it carries the request
            earlier[-1] = earlier[-1].model_copy(update={"request_params": message.request_params})
        store = self.store
        async with store.transaction() as tx:
            if new is not None:
                # refused (TenantMismatchError) for an id another tenant holds: nothing is written
                await store.create_session(new, tx=tx)
            if claim is not None:
                # first, before any seq is taken: a busy session is refused with nothing written
                await store.claim_session(turn.tenant_id, turn.session_id, claim[0], claim[1], tx=tx)
            with_user = not (skip_user and earlier)
            rows = [*earlier, message] if with_user else list(earlier)
            # the reply's row before any of its deltas reaches a client, in the same batch
            reply = self._opening_reply(turn, rows[-1].id)
            batch = [*rows, reply] if reply is not None else rows
            written = await store.save_messages(batch, tx=tx) if len(batch) > 1 else [
                await store.save_message(batch[0], tx=tx)]
            saved = written[len(rows) - 1]
        self._unwritten = None if new is not None else self._unwritten
        return saved


class _Ids(EventHandler):
    """Runs before the persistence plugin: names the reply, hands it the request parameters and the earlier
    messages to save with the user message, and keeps the turn, whose ids the plugin fills."""

    def __init__(self, reply_id: uuid.UUID, request_params: dict[str, Any] | None, plugin: _EnginePlugin,
                 earlier: list[Message], *, user_message: bool = True, parts: Sequence[ContentPart] = (),
                 claim_seconds: float | None = None) -> None:
        self.reply_id = reply_id
        self.request_params = request_params
        self.plugin = plugin
        self.earlier = earlier
        self.claim_seconds = claim_seconds
        self.user_message = user_message
        self.parts = parts
        self.turn: Turn | None = None

    async def before_call(self, turn: Turn) -> None:
        turn.reply_id = self.reply_id
        turn.request_params = self.request_params
        if self.earlier or self.parts:
            self.plugin.write_with_user_message(turn, self.earlier, user_message=self.user_message,
                                                parts=self.parts)
        if self.claim_seconds is not None:
            self.plugin.claim_with_user_message(turn, self.reply_id, self.claim_seconds)
        self.turn = turn


@dataclass(frozen=True, eq=False)
class StartedTurn:
    """A turn started by :meth:`TurnSession.start`: iterate ``stream`` for the reply's text."""

    stream: ChatStream
    session_id: uuid.UUID
    #: the id the reply row is (or will be) stored under
    reply_id: uuid.UUID
    _ids: _Ids = field(repr=False)

    @property
    def user_message_id(self) -> uuid.UUID | None:
        """The saved user message, once the turn got that far (before the provider is called)."""
        return self._ids.turn.user_message_id if self._ids.turn is not None else None

    @property
    def api_call_id(self) -> uuid.UUID | None:
        """The id of the turn's api-call row, known once the user message is saved; the row is written
        when the turn ends."""
        return self._ids.turn.api_call_id if self._ids.turn is not None else None


class TurnSession:
    """One session opened by the engine, with the agent that answers it. Keep it for the next turns; open
    the session again to change its settings."""

    def __init__(
        self, agent: LLMAgent, plugin: _EnginePlugin, config: AgentConfig | None, settings: SessionSettings,
        *, created: bool, owns_provider: bool,
    ) -> None:
        self.agent = agent
        self.plugin = plugin
        #: the agent row that answers (None: the engine's default provider)
        self.config = config
        #: what the session runs with, as recorded on it
        self.settings = settings
        #: True when this open created the session
        self.created = created
        self._owns_provider = owns_provider

    def __repr__(self) -> str:
        return f"<TurnSession {self.session_id} agent={self.settings.agent!r} model={self.agent.model!r}>"

    @property
    def session_id(self) -> uuid.UUID:
        return self.agent.session_id

    @property
    def provider_label(self) -> str:
        return self.settings.provider or provider_label(self.agent.provider)

    def start(self, text: str | None, options: TurnOptions | None = None) -> StartedTurn:
        """Start a turn (nothing is sent or saved until ``stream`` is iterated). ``text`` None: the turn's
        new input is the tool results that end ``options.earlier`` (no user message is written).

        Tool results are checked against the calls they answer (the session's last reply's, or an assistant
        message's among ``earlier``): a result for an unknown call, a call left unanswered, or a turn with
        no text and no results is a :class:`ValidationError`, with nothing written. After a turn with
        earlier messages or without a user message, open the session again for the next one (the agent's
        memory of it holds neither; the database does)."""
        o = options or TurnOptions()
        agent = self.agent
        if text is None and (not o.earlier or o.earlier[-1].role != "tool"):
            raise ValidationError("a turn without a user message must end with tool results (the answers to "
                                  "the calls of the session's last reply)")
        tail = [m for m in o.earlier if m.role != "system"]
        if (o.tools or o.user_parts or any(m.tool_calls or m.role == "tool" or m.parts for m in tail)) and not getattr(
                agent.provider, "takes_tools_and_images", True):
            raise ValidationError(f"the model {agent.model!r} runs in-process and cannot take tools, tool calls "
                                  "or image or file input; answer with an agent whose provider can (an "
                                  "OpenAI-compatible server with function calling)")
        if any(m.role == "tool" for m in tail):
            _check_results(self.session_id, _held(agent), tail, text)
        rows = [message_row(m, session_id=self.session_id, tenant_id=agent.tenant_id, user_id=agent.user_id,
                            id=m.id or uuid7()) for m in o.earlier]
        ids = _Ids(o.reply_id or uuid7(), o.request_params, self.plugin, rows, user_message=text is not None,
                   parts=o.user_parts, claim_seconds=o.claim_seconds)
        overrides = None
        tools = tuple(o.tools) or None
        if (o.temperature, o.max_tokens, o.system_prompt, o.extra, tools, o.tool_choice,
                o.parallel_tool_calls) != (None, None, None, None, None, None, None):
            overrides = TurnOverrides(o.temperature, o.max_tokens, o.system_prompt, o.extra, tools, o.tool_choice,
                                      o.parallel_tool_calls)
        messages = o.messages
        # the client's tools are never run here: a turn given ``messages=`` ends with the model's calls
        if messages is None and (o.earlier or tools or text is None or o.user_parts):
            messages = _window_with(agent, o.earlier, _user_message(text, o.user_parts))
        stream = agent.chat_stream(
            text or _RESULTS_TURN, session_id=self.session_id, messages=messages, overrides=overrides,
            before=(ids,), after=tuple(o.handlers),
        )
        return StartedTurn(stream, self.session_id, ids.reply_id, ids)

    async def aclose(self) -> None:
        """Close the agent: its plugin tries to write what it still holds; an agent row's provider is
        closed, the engine's shared one is not."""
        if self._owns_provider:
            await self.agent.aclose()
        else:
            await self.plugin.close()


class TurnEngine:
    """Opens sessions and starts turns on ``store`` (which it does not close).

    ``provider``: the default provider (used where no agent row answers); None: :func:`default_provider`
    from the environment, made on first use and shared by every session, so the local model loads once.
    The plugin options are those of :class:`PersistencePlugin`; ``limits`` bound every turn; ``tools`` are
    run by every agent it builds. ``client_answers_calls``: the calls of a session's last reply may be the
    client's to answer in a later turn (``mofa serve``), so opening the session never records them as
    interrupted (a process that died running its own tools leaves them answered in memory only).
    """

    def __init__(
        self,
        store: Store,
        *,
        provider: LLMProvider | None = None,
        plugin_id: str = "mofa-turns",
        checkpoint_interval: float = 1.0,
        flush_timeout: float = 5.0,
        record_delta_offsets: bool = False,
        limits: StreamLimits | None = None,
        tools: Sequence[Callable[..., Any] | Tool] = (),
        client_answers_calls: bool = False,
    ) -> None:
        self.store = store
        self.client_answers_calls = client_answers_calls
        #: the tools every agent the engine builds runs (``LLMAgentBuilder.with_tools``)
        self.tools = tuple(tools)
        self._default = provider
        self._owns_default = False
        self.plugin_id = plugin_id
        self.checkpoint_interval = checkpoint_interval
        self.flush_timeout = flush_timeout
        self.record_delta_offsets = record_delta_offsets
        self.limits = limits

    def __repr__(self) -> str:
        return f"TurnEngine(store={type(self.store).__name__}, provider={self._default!r})"

    @property
    def default_provider(self) -> LLMProvider:
        """The provider that answers where no agent row does (a ConfigError when none is configured)."""
        if self._default is None:
            self._default = default_provider()
            self._owns_default = True
        return self._default

    async def aclose(self) -> None:
        """Close the default provider if the engine made it."""
        if self._owns_default and self._default is not None:
            await self._default.aclose()

    async def open(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        session: Session | uuid.UUID | None = None,
        request: SettingsRequest | None = None,
        *,
        create_with_turn: bool = False,
    ) -> TurnSession:
        """Open ``session`` (a row the caller read, an id, or None for a new one) for ``user_id`` of
        ``tenant_id`` and build the agent that answers it with ``request`` applied.

        Another user's session is TenantMismatchError; an id nobody holds starts a new session under that
        id. Nothing is written until the agent and provider are known to be usable: an unknown agent code
        is NotFoundError, an agent row that cannot answer AgentUnavailableError, a model the provider
        cannot serve ModelUnavailableError, a missing provider a ConfigError. ``create_with_turn``: a new
        session is not written now but with its first turn's user message, in one transaction (its id is
        ``session_id`` already)."""
        req = request or SettingsRequest()
        row = await self._row(tenant_id, user_id, session)
        stored = row.settings if row is not None else None
        config = await self._choose(tenant_id, row, stored, req)
        if config is not None:
            try:
                builder = LLMAgentBuilder.from_agent_config(config)
            except ConfigError as exc:
                raise AgentUnavailableError(str(exc)) from None
        else:
            builder = LLMAgentBuilder.from_env(provider=self.default_provider).with_agent_code(None)
        _apply(builder, req, config)
        builder.with_user(user_id).with_tenant(tenant_id)
        if self.tools:
            builder.with_tools(self.tools)
        if self.limits is not None:
            lim = self.limits
            builder.with_idle_timeout(lim.idle_timeout).with_turn_timeout(lim.turn_timeout)
            builder.with_max_reply_chars(lim.max_reply_chars)
        sid = row.id if row is not None else session if isinstance(session, uuid.UUID) else None
        deferred = create_with_turn and row is None
        if deferred and sid is None:
            sid = uuid7()
        plugin = _EnginePlugin(
            self.plugin_id, self.store, user_id, tenant_id, config.agent.id if config is not None else None, sid,
            checkpoint_interval=self.checkpoint_interval, flush_timeout=self.flush_timeout,
            record_delta_offsets=self.record_delta_offsets, create_with_turn=deferred,
            client_answers_calls=self.client_answers_calls,
        )
        if row is not None:
            plugin.adopt(row)  # the plugin opens it without reading it again
        agent = await builder.with_persistence_plugin(plugin).build_async()
        settings = agent.settings
        assert settings is not None  # the plugin records settings
        return TurnSession(agent, plugin, config, settings, created=row is None, owns_provider=config is not None)

    async def _row(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, session: Session | uuid.UUID | None
    ) -> Session | None:
        if session is None:
            return None
        if isinstance(session, Session):  # read by the caller: only the owner check is left
            if session.tenant_id != tenant_id or session.user_id != user_id:
                raise TenantMismatchError(
                    f"session {session.id} belongs to another user; nothing was read or written"
                )
            return session
        return await find_session(self.store, tenant_id, user_id, session)

    async def _choose(
        self, tenant_id: uuid.UUID, row: Session | None, stored: SessionSettings | None, req: SettingsRequest
    ) -> AgentConfig | None:
        """The agent row that answers: the one asked for, else the one the session recorded, else none."""
        code: str | None
        if not isinstance(req.agent, Keep):
            code = req.agent
        elif stored is not None and "agent" in stored.model_fields_set:
            code = stored.agent
        elif row is not None and row.agent_id is not None:  # a session from before settings were recorded
            agent = await self.store.get_agent(tenant_id, row.agent_id)
            code = agent.agent_code if agent is not None else None
        else:
            code = None
        if code is None:
            return None
        config = await self.store.get_agent_by_code_and_tenant_with_provider(tenant_id, code)
        if config is None:
            asked = "" if not isinstance(req.agent, Keep) else " (the agent this session was started with)"
            raise NotFoundError(
                f"no agent with code {code!r}{asked} (and its provider) in tenant {tenant_id}; see "
                "`mofa agents list`"
            )
        return config


def _apply(builder: LLMAgentBuilder, req: SettingsRequest, config: AgentConfig | None) -> None:
    """The settings asked for, as the builder's own: they replace what the session recorded."""
    if not isinstance(req.model, Keep):
        provider = builder.provider
        default = config.agent.model_name if config is not None else provider.default_model if provider else None
        model = req.model or default
        if model:
            builder.with_model(model)
            if req.model and isinstance(provider, ProviderDefaults):
                try:  # the provider's own check, before anything is written (the builder makes it again)
                    provider.apply_defaults(ChatParams(model=model))
                except ConfigError as exc:
                    raise ModelUnavailableError(str(exc)) from None
    if not isinstance(req.system_prompt, Keep):
        builder.with_system_prompt(req.system_prompt)
    if not isinstance(req.window, Keep):
        builder.with_sliding_window(req.window)
    if not isinstance(req.max_tokens, Keep):
        builder.with_max_tokens(req.max_tokens)


#: the text a turn without a user message hands the agent (never saved: the tool results stand in)
_RESULTS_TURN = "(tool results)"


def _held(agent: LLMAgent) -> list[ChatMessage]:
    """The session's history as the agent holds it, without the system prompt and without the answers the
    window made up in memory (never stored, no id) for the calls of a reply the client has not answered yet."""
    held = agent.history[1:] if agent.system_prompt else list(agent.history)
    end = len(held)
    while end and held[end - 1].role == "tool" and held[end - 1].id is None:
        end -= 1
    return held[:end]


def _user_message(text: str | None, parts: Sequence[ContentPart]) -> ChatMessage | None:
    if text is None:
        return None
    if not parts:
        return ChatMessage(role="user", content=text)
    user = ChatMessage(role="user", content="", parts=tuple(parts))
    if user.content != text:
        raise ValidationError("a user message with input parts: its text must be its text parts joined by newlines")
    return user


def _check_results(session_id: uuid.UUID, held: Sequence[ChatMessage], tail: Sequence[ChatMessage],
                   text: str | None) -> None:
    """Tool results in a turn's new input must answer the calls before them: those of the session's last
    reply (when it made calls; ``held`` is the history of :func:`_held`) or of an assistant message in the
    input."""
    start = len(held)
    while start and held[start - 1].role == "tool":
        start -= 1
    last = list(held[start - 1 :]) if start and held[start - 1].tool_calls else []
    sequence = [*last, *tail] + ([ChatMessage(role="user", content=text)] if text is not None else [])
    try:
        check_tool_sequence(sequence)
    except ValidationError as exc:
        made = ", ".join(repr(c.id) for c in last[0].tool_calls) if last else "none"
        raise ValidationError(f"session {session_id}: the tool results do not fit the calls they answer (the "
                              f"calls of its last reply: {made}): {exc}; nothing was written") from None


def _window_with(agent: LLMAgent, earlier: Sequence[ChatMessage], user: ChatMessage | None) -> list[ChatMessage]:
    """What a turn with earlier messages sends (after the system prompt): the window over the session's
    history followed by them, then the user message (None: the turn ends with tool results, and the round
    they belong to is sent whole after the window of the rounds before it)."""
    held = _held(agent)
    history = [*held, *earlier]  # their system items too: the window sends them with the round they open
    count = agent.provider.count_tokens
    if user is not None:
        return select_window(history, user, system_prompt="", rounds=agent.window, token_budget=agent.token_budget,
                             count_tokens=count)
    last_user = max((i for i, m in enumerate(history) if m.role == "user"), default=0)
    before = select_window(history[:last_user], None, system_prompt="", rounds=agent.window,
                           token_budget=agent.token_budget, count_tokens=count)
    return [*before, *history[last_user:]]
