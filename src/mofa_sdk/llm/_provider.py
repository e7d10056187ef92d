"""The provider protocol: messages and parameters in, a stream of events out. The agent never sees HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._types import ChatMessage, Usage

__all__ = [
    "ChatParams",
    "Finish",
    "LLMProvider",
    "ProviderDefaults",
    "ProviderEvent",
    "StreamStarted",
    "TextDelta",
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


ProviderEvent = StreamStarted | TextDelta | UsageReport | Finish


@runtime_checkable
class LLMProvider(Protocol):
    """Implementations: OpenAICompatibleProvider, LocalProvider, ScriptedProvider.

    ``stream`` is an async generator: it raises ``ProviderError`` subclasses (with ``partial_text``), or a
    ``ValidationError`` before sending anything for request text it cannot encode, and ``aclose()`` on it
    releases the underlying HTTP response or generation at once. Its text need not be valid Unicode and
    its usage need not be plausible: the stream layer repairs the one and drops the other (see
    ``TurnResult.notes``). A provider that gets no usage from its backend yields an estimated
    ``UsageReport`` (``usage.estimated = True``) before ``Finish``; it never reports a silent 0.
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
