"""The error tree of mofa-sdk. Every error the library raises derives from :class:`MofaError`.

::

    MofaError
    ├── ConfigError                 misuse: bad argument, bad environment, invalid UUID, missing provider
    │   ├── ValidationError         a value that cannot be stored (lone surrogate, non-JSON metadata, …)
    │   ├── AgentUnavailableError   an agent row cannot answer (disabled, its provider unusable)
    │   ├── ModelUnavailableError   the provider that answers cannot serve the model asked for
    │   └── ServiceUnavailableError the service cannot answer as configured (no provider, shutting down)
    ├── PersistenceError            a database operation failed
    │   ├── NotFoundError           the row does not exist (for this tenant)
    │   ├── ConflictError           a unique key or a concurrent change got in the way
    │   ├── TenantMismatchError     the row exists but belongs to another tenant or user
    │   ├── DatabaseUnavailableError the server cannot be reached, or went away
    │   └── UnsavedReplyError       a reply streamed to the user could not be written (carries it)
    ├── ProviderError               the LLM provider failed (``partial_text`` holds what streamed)
    │   ├── AuthenticationError     401/403
    │   ├── RateLimitError          429, after retries
    │   ├── ProviderServerError     5xx
    │   ├── ProviderTimeoutError    connect or read timeout
    │   │   ├── IdleTimeoutError    no reply text for too long (keep-alives and empty deltas do not count)
    │   │   └── TurnTimeoutError    the whole turn took longer than its deadline
    │   ├── ProviderConnectionError the server cannot be reached
    │   ├── StreamInterruptedError  the connection was cut mid-stream
    │   ├── ReplyTooLargeError      the reply grew past its size cap
    │   └── MalformedResponseError  a chunk that is not what the protocol says
    ├── AgentError                  the agent was used wrongly at run time
    │   ├── StreamConsumedError     a stream iterated twice
    │   ├── SessionBusyError        a second turn on a session that is still streaming
    │   ├── VetoedError             a plugin refused the call
    │   └── ToolRoundsExceededError the model still asked for tools after the turn's round limit
    └── ToolArgumentsError          a tool call's arguments are not JSON or do not fit the tool
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AgentUnavailableError",
    "AuthenticationError",
    "ConfigError",
    "ConflictError",
    "DatabaseUnavailableError",
    "IdleTimeoutError",
    "MalformedResponseError",
    "ModelUnavailableError",
    "MofaError",
    "NotFoundError",
    "PersistenceError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ReplyTooLargeError",
    "ServiceUnavailableError",
    "SessionBusyError",
    "StreamConsumedError",
    "StreamInterruptedError",
    "TenantMismatchError",
    "ToolArgumentsError",
    "ToolRoundsExceededError",
    "TurnTimeoutError",
    "UnsavedReplyError",
    "ValidationError",
    "VetoedError",
]


class MofaError(Exception):
    """Root of every error raised by mofa-sdk."""


class ConfigError(MofaError):
    """The library was configured or called wrongly; fix the call, not the environment."""


class ValidationError(ConfigError):
    """A value cannot be stored as given. The message names the field."""


class AgentUnavailableError(ConfigError):
    """The agent row a turn names exists but cannot answer (disabled, or its provider cannot be built)."""

    code = "agent_unavailable"


class ModelUnavailableError(ConfigError):
    """The provider that answers cannot serve the model asked for (the local model answers only as itself);
    nothing was written."""

    code = "model_not_found"


class ServiceUnavailableError(ConfigError):
    """The service cannot answer as it is configured or while it stops: no provider, a turn stopped before
    it started. ``code`` says which (``no_provider``, ``agent_unavailable``, ``unavailable``)."""

    def __init__(self, message: str, *, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code


class PersistenceError(MofaError):
    """A database operation failed."""


class NotFoundError(PersistenceError):
    """The row does not exist, or not for this tenant."""


class ConflictError(PersistenceError):
    """A unique key or a concurrent change got in the way."""


class TenantMismatchError(PersistenceError):
    """The row exists but belongs to another tenant or user. Nothing was read or written."""


class DatabaseUnavailableError(PersistenceError):
    """The database cannot be reached or went away."""


class UnsavedReplyError(PersistenceError):
    """A reply reached the user but could not be written. ``reply`` holds everything needed to save it later."""

    def __init__(self, message: str, *, reply: object = None) -> None:
        super().__init__(message)
        self.reply = reply


class ProviderError(MofaError):
    """The LLM provider failed. ``partial_text`` is what had streamed before the failure."""

    code: str = "provider_error"
    #: the api-call status this failure is recorded with
    call_status: str = "failed"

    def __init__(self, message: str, *, partial_text: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.status_code = status_code


class AuthenticationError(ProviderError):
    code = "authentication"


class RateLimitError(ProviderError):
    code = "rate_limited"
    call_status = "rate_limited"


class ProviderServerError(ProviderError):
    code = "server_error"


class ProviderTimeoutError(ProviderError):
    code = "timeout"
    call_status = "timeout"


class IdleTimeoutError(ProviderTimeoutError):
    """The provider sent no reply text for the idle timeout: a stream of keep-alive comments or empty
    deltas counts as silence."""

    code = "idle_timeout"


class TurnTimeoutError(ProviderTimeoutError):
    """The turn ran past its overall deadline, however steadily text was arriving."""

    code = "turn_timeout"


class ProviderConnectionError(ProviderError):
    code = "connection"


class StreamInterruptedError(ProviderError):
    code = "stream_interrupted"


class ReplyTooLargeError(ProviderError):
    """The reply reached its size cap; ``partial_text`` is the reply up to the cap."""

    code = "reply_too_large"


class MalformedResponseError(ProviderError):
    code = "malformed_response"


class AgentError(MofaError):
    """The agent was used wrongly at run time."""


class StreamConsumedError(AgentError):
    """A chat stream can be iterated once."""


class SessionBusyError(AgentError):
    """A turn is already streaming on this session."""


class VetoedError(AgentError):
    """A plugin's before-call hook refused the call."""


class ToolRoundsExceededError(AgentError):
    """The model still asked for tools after the turn's limit of tool rounds (``with_max_tool_rounds``): its
    last calls were answered with an error result, not run, and the turn ended."""

    code = "tool_rounds_exceeded"


class ToolArgumentsError(MofaError):
    """A tool call's arguments are not valid JSON or do not fit the tool's parameters. The message says what
    was wrong in words a model can act on: an agent sends it back as the call's ``is_error`` result."""

    code = "tool_arguments"
