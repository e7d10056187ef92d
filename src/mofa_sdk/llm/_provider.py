"""The provider protocol: messages and parameters in, a stream of events out. The agent never sees HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from ._toolcalls import ToolCallArgumentsDelta, ToolCallFinished, ToolCallStarted
from ._tools import ToolSpec
from ._types import ChatMessage, Usage

__all__ = [
    "ChatParams",
    "Finish",
    "LLMProvider",
    "ProviderDefaults",
    "ProviderEvent",
    "StreamStarted",
    "TextDelta",
    "ToolCallArgumentsDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "UsageReport",
]


@dataclass(frozen=True, slots=True)
class ChatParams:
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    #: "text", "json_object", or a JSON-schema response format dict, passed through
    response_format: Any = None
    #: provider-specific request fields (the agent row's custom_params), passed into the request body
    extra: dict[str, Any] = field(default_factory=dict)
    #: False: one non-streamed request, yielded as a single delta
    stream: bool = True
    #: the tools the model may call (a :class:`Tool` is a spec with its function)
    tools: tuple[ToolSpec, ...] = ()
    #: "auto", "none", "required", or the name of one of ``tools`` to make the model call it; None sends none
    tool_choice: str | None = None
    #: whether the model may make several calls in one message; None leaves it to the server
    parallel_tool_calls: bool | None = None

    def __post_init__(self) -> None:
        if not self.tools and self.tool_choice is None and self.parallel_tool_calls is None:
            return
        tools = tuple(self.tools) if isinstance(self.tools, list | tuple) else None
        if tools is None or not all(isinstance(t, ToolSpec) for t in tools):
            raise ConfigError("ChatParams.tools must be a sequence of Tool or ToolSpec")
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"ChatParams.tools: two tools have the same name ({sorted(names)})")
        object.__setattr__(self, "tools", tools)
        choice = self.tool_choice
        if choice is not None and choice not in ("auto", "none", "required") and choice not in names:
            raise ConfigError(f"ChatParams.tool_choice must be 'auto', 'none', 'required' or a tool's name "
                              f"({', '.join(names) or 'no tools given'}), got {choice!r}")
        if choice not in (None, "auto", "none") and not tools:
            raise ConfigError(f"ChatParams.tool_choice {choice!r} needs tools")
        if self.parallel_tool_calls is not None and not isinstance(self.parallel_tool_calls, bool):
            raise ConfigError("ChatParams.parallel_tool_calls must be a bool or None")


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """The first chunk arrived; carries the provider's response id when it has one."""

    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str | None = None
    response_id: str | None = None
    #: the model that answered, as the provider reports it (None: the one asked for); the ledger records it
    model: str | None = None


ProviderEvent = (
    StreamStarted | TextDelta | ToolCallStarted | ToolCallArgumentsDelta | ToolCallFinished | UsageReport | Finish
)


@runtime_checkable
class LLMProvider(Protocol):
    """Implementations: OpenAICompatibleProvider, LocalProvider, ScriptedProvider.

    ``stream`` is an async generator: it raises ``ProviderError`` subclasses (with ``partial_text``), or a
    ``ValidationError`` before sending anything for request text it cannot encode, and ``aclose()`` on it
    releases the underlying HTTP response or generation at once. Its text need not be valid Unicode and
    its usage need not be plausible: the stream layer repairs the one and drops the other (see
    ``TurnResult.notes``). A provider that gets no usage from its backend yields an estimated
    ``UsageReport`` (``usage.estimated = True``) before ``Finish``; it never reports a silent 0.

    Tool calls: ``ToolCallStarted`` and ``ToolCallArgumentsDelta`` events as they stream (after or between
    text deltas), then, once the stream finished, one ``ToolCallFinished`` per call in index order before
    ``UsageReport``; ``Finish.reason`` is then usually ``"tool_calls"``. A stream cut mid-call raises as a
    text stream does; the events so far rebuild the partial calls (``ToolCallAccumulator``). A provider
    that cannot do tools raises ``ConfigError`` when ``params.tools`` is set; it never ignores them.
    """

    #: a short name for logs and api-call rows ("openai-compatible", "local", "scripted")
    name: str
    default_model: str

    def stream(self, messages: Sequence[ChatMessage], params: ChatParams) -> AsyncIterator[ProviderEvent]: ...

    def count_tokens(self, text: str) -> int:
        """An estimate used for token budgets and for replies cut before the provider reported usage."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ProviderDefaults(Protocol):
    """A provider that decides part of the request itself (the local model: its one model name and a reply
    cap). The builder applies it when it builds an agent, so a request it cannot serve is refused before
    anything is saved or sent, and the provider applies it again to every request it gets."""

    def apply_defaults(self, params: ChatParams) -> ChatParams:
        """``params`` as this provider serves them; ConfigError (naming the fix) for what it cannot serve."""
        ...
