"""The rows mofa-sdk stores, as validated pydantic models.

Constructing an entity with bad values raises :class:`mofa_sdk.errors.ValidationError` (a
``MofaError``), never pydantic's own error, so callers need one ``except`` clause.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from ._redact import redact_text, redact_url
from ._validate import INT32_MAX, INT32_MIN, INT64_MAX, check_json, check_key, check_label, check_text
from ._vocab import PROVIDER_TYPES, ApiCallStatus, MessageRole, MessageStatus, is_local_provider
from .errors import ValidationError
from .ids import as_utc, utc_now, uuid7

__all__ = [
    "PROVIDER_TYPES",
    "Agent",
    "AgentConfig",
    "ApiCallStatus",
    "ApiKey",
    "LLMApiCall",
    "Message",
    "MessagePart",
    "MessageRole",
    "MessageStatus",
    "MessageToolCall",
    "Provider",
    "QueryFilter",
    "Session",
    "SessionSettings",
    "SettingsChange",
    "UsageStatistics",
    "check_json",
    "check_text",
]

#: a time as every store keeps it: UTC, a naive value taken as UTC already (so all stores hand back the same)
UtcTime = Annotated[datetime, AfterValidator(as_utc)]


def _no_nul_json(value: Any, field: str) -> Any:
    """JSON columns other than message metadata refuse U+0000 on every store (PostgreSQL cannot turn a
    ``\\u0000`` escape into text, so plain SQL such as ``->>`` would fail on the row)."""
    if "\\u0000" in json.dumps(value):
        raise ValidationError(f"{field} must not contain NUL characters")
    return value


def _no_nul(value: str | None, field: str) -> str | None:
    if value is not None and "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    return value


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, str_strip_whitespace=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise ValidationError(_describe(type(self).__name__, exc)) from None
        except ValidationError:
            raise

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise ValidationError(_describe(type(self).__name__, exc)) from None


def _describe(model: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or model
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return f"invalid {model}: " + "; ".join(parts)


class MessageToolCall(Entity):
    """One tool call an assistant message makes, as stored: ``arguments`` is the JSON text the model
    produced, verbatim (a call cut mid-stream keeps its partial text)."""

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str = "{}"

    @field_validator("id", "name")
    @classmethod
    def _key(cls, v: str, info: pydantic.ValidationInfo) -> str:
        # matched in SQL (the repair of unanswered calls reads the ids), where PostgreSQL text refuses NUL
        return _no_nul(check_text(v, str(info.field_name)), str(info.field_name)) or ""

    @field_validator("arguments")
    @classmethod
    def _arguments(cls, v: str) -> str:
        return check_text(v, "arguments")


_IMAGE_SCHEMES = ("http://", "https://", "data:")


class MessagePart(Entity):
    """One input part of a user message that has more than text: a text part (``text``), an image part
    (``url``, an ``http(s)://`` or ``data:`` URL kept exactly as given, and OpenAI's ``detail`` hint) or a file
    part (``filename`` and its content as a ``data:`` URL in ``url``)."""

    type: Literal["text", "image", "file"]
    text: str | None = None
    url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    filename: str | None = None

    @field_validator("text", "url", "filename")
    @classmethod
    def _text(cls, v: str | None, info: pydantic.ValidationInfo) -> str | None:
        return None if v is None else check_text(v, str(info.field_name))

    @model_validator(mode="after")
    def _shape(self) -> MessagePart:
        if self.type == "text":
            if self.text is None or self.url is not None or self.detail is not None:
                raise ValueError("a text part has text, and no url or detail")
        elif self.type == "file":
            if self.filename is None or self.url is None or not self.url.startswith("data:") or self.text is not None \
                    or self.detail is not None:
                raise ValueError("a file part has a filename and a data: URL, and no text or detail")
        elif self.url is None or self.text is not None or self.filename is not None:
            raise ValueError("an image part has a url, and no text or filename")
        elif not self.url.startswith(_IMAGE_SCHEMES):
            shown = self.url if len(self.url) <= 40 else self.url[:40] + "…"
            raise ValueError(f"an image part's url must be an http(s):// or data: URL, got {shown!r}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # stored as {"type", "text"}, {"type", "url", "detail"?} or {"type", "filename", "url"}: no nulls for
        # what a part does not have
        return {k: v for k, v in handler(self).items() if v is not None}


class Message(Entity):
    id: uuid.UUID = Field(default_factory=uuid7)
    session_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    agent_id: uuid.UUID | None = None
    #: per-session sequence number, assigned by the database when saved (0 = not saved yet)
    seq: int = Field(default=0, ge=0, le=INT64_MAX)
    role: MessageRole
    content: str
    status: MessageStatus = "complete"
    metadata: dict[str, Any] = Field(default_factory=dict)
    parent_message_id: uuid.UUID | None = None
    create_time: UtcTime = Field(default_factory=utc_now)
    update_time: UtcTime = Field(default_factory=utc_now)
    #: a streamed reply's delta boundaries: where each delta ends in ``content`` (cumulative character
    #: offsets), so that a reader of the database can rebuild the stream event by event (None: not recorded)
    delta_ends: list[Annotated[int, Field(ge=0, le=INT64_MAX, strict=True)]] | None = None
    #: on a user message: the API request that started this turn, kept for ``mofa serve`` (which answers
    #: later reads of the response from it); opaque to the library. It may hold U+0000 (a client's metadata
    #: string), as message metadata may: nothing reads inside it with SQL
    request_params: dict[str, Any] | None = None
    #: on an assistant message: the tool calls it makes (its text may then be empty)
    tool_calls: list[MessageToolCall] = Field(default_factory=list)
    #: on a ``tool`` message: the id of the call it answers (None only on rows stored before migration 0009)
    tool_call_id: str | None = None
    #: on a ``tool`` message: the result is an error (the tool raised, or was interrupted)
    is_error: bool = False
    #: on a user message with non-text input: its ordered parts; ``content`` is their text joined by newlines
    parts: list[MessagePart] = Field(default_factory=list)
    #: a system message summarising every message of its session before it (``POST /v1/responses/compact``):
    #: the window starts at the last one, sending its text (as a round of its own) instead of the messages it
    #: summarises
    compaction: bool = False

    @field_validator("tool_call_id")
    @classmethod
    def _call_id(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("must not be empty")
        return None if v is None else _no_nul(check_text(v, "tool_call_id"), "tool_call_id")

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        role = self.role
        if self.tool_calls:
            if role != "assistant":
                raise ValueError(f"only an assistant message makes tool calls, not a {role} message")
            ids = [c.id for c in self.tool_calls]
            if len(set(ids)) != len(ids):
                raise ValueError(f"an assistant message's tool call ids must differ, got {ids}")
        if self.compaction and role != "system":
            raise ValueError(f"a compaction is a system message, not a {role} message")
        if (self.tool_call_id is not None or self.is_error) and role != "tool":
            raise ValueError(f"tool_call_id and is_error belong to a tool message, not a {role} message")
        if self.parts:
            if role != "user":
                raise ValueError(f"only a user message has input parts, not a {role} message")
            text = "\n".join(p.text or "" for p in self.parts if p.type == "text")
            if self.content != text:
                raise ValueError("a user message with parts: content must be the text of its text parts "
                                 "joined by newlines")
        return self

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        return check_text(v, "content")

    @field_validator("request_params")
    @classmethod
    def _params(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else check_json(v, "request_params")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_json(v, "metadata")  # type: ignore[no-any-return]


class SessionSettings(Entity):
    """How a session is answered, recorded on the session when it starts and whenever a turn changes it, so
    that it resumes the same way through the library, ``mofa chat`` and ``mofa serve``.

    Only the fields given were recorded (``model_fields_set`` names them, and only they are stored): an
    unrecorded ``window`` means "not chosen", where a recorded ``None`` means "every round"."""

    #: the agent row's code (None: no agent row; the default provider answers)
    agent: str | None = None
    #: which provider answered, as a label ("local SmolLM2-135M-Instruct-Q8_0.gguf", "openai-compatible URL"
    #: without credentials): a recorded model is only restored on the provider it came from
    provider: str | None = None
    model: str | None = None
    #: past rounds sent (None: all)
    window: int | None = Field(default=None, ge=0)
    system_prompt: str | None = None
    #: the cap on each reply's tokens (None: the provider's own default)
    max_tokens: int | None = Field(default=None, gt=0)


class SettingsChange(Entity):
    """One setting a resumed session was given anew: when, which, from what, to what."""

    at: UtcTime = Field(default_factory=utc_now)
    key: str
    old: Any = None
    new: Any = None

    @field_validator("old", "new")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return check_json(v, "setting value")


class Session(Entity):
    id: uuid.UUID = Field(default_factory=uuid7)
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    agent_id: uuid.UUID | None = None
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: how the session is answered (None: nothing recorded yet); see ``mofa_sdk.persistence.TurnEngine``
    settings: SessionSettings | None = None
    #: every recorded setting that a later turn changed, oldest first
    settings_changes: list[SettingsChange] = Field(default_factory=list)
    create_time: UtcTime = Field(default_factory=utc_now)
    update_time: UtcTime = Field(default_factory=utc_now)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str | None) -> str | None:
        return _no_nul(check_text(v, "title") if v is not None else None, "title")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _no_nul_json(check_json(v, "metadata"), "metadata")  # type: ignore[no-any-return]

    @field_validator("settings")
    @classmethod
    def _settings(cls, v: SessionSettings | None) -> SessionSettings | None:
        if v is not None:
            _no_nul_json(v.model_dump(mode="json"), "settings")
        return v

    @field_validator("settings_changes")
    @classmethod
    def _changes(cls, v: list[SettingsChange]) -> list[SettingsChange]:
        _no_nul_json([c.model_dump(mode="json") for c in v], "settings_changes")
        return v


class Provider(Entity):
    id: uuid.UUID = Field(default_factory=uuid7)
    tenant_id: uuid.UUID
    provider_name: str = Field(min_length=1, max_length=200)
    #: one of ``PROVIDER_TYPES`` (``_vocab``): OpenAI-compatible at ``api_base``, or local (a GGUF path there)
    provider_type: str
    api_base: str | None = None
    api_key: SecretStr | None = None
    enabled: bool = True
    create_time: UtcTime = Field(default_factory=utc_now)
    update_time: UtcTime = Field(default_factory=utc_now)

    @field_validator("provider_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_key(v, "provider_name")

    @field_validator("api_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        # the message never shows the key, not even the character at fault
        if v is not None:
            plain = v.get_secret_value()
            try:
                plain.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValidationError(
                    f"api_key contains a character UTF-8 cannot encode (at index {exc.start})"
                ) from None
            if "\x00" in plain:
                raise ValidationError("api_key must not contain NUL characters")
        return v

    @field_validator("provider_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in PROVIDER_TYPES:
            raise ValueError(f"unknown provider_type {v!r}; expected one of {', '.join(PROVIDER_TYPES)}")
        return v

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return _no_nul(check_text(v, "api_base") if v is not None else None, "api_base")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # api_base may carry credentials (http://u:pw@…, ?key=…): a repr shows it redacted, as it does api_key
        for name, value in super().__repr_args__():
            if name == "api_base" and isinstance(value, str) and not is_local_provider(self.provider_type):
                value = redact_url(value)
            yield name, value


class Agent(Entity):
    id: uuid.UUID = Field(default_factory=uuid7)
    tenant_id: uuid.UUID
    agent_code: str = Field(min_length=1, max_length=200)
    agent_name: str = Field(min_length=1, max_length=500)
    agent_order: int = Field(default=0, ge=INT32_MIN, le=INT32_MAX)
    agent_status: bool = True
    #: the sliding window in rounds (None: every round)
    context_limit: int | None = Field(default=None, ge=0, le=INT32_MAX)
    custom_params: dict[str, Any] | None = None
    max_completion_tokens: int | None = Field(default=None, gt=0, le=INT32_MAX)
    model_name: str = Field(min_length=1)
    provider_id: uuid.UUID
    response_format: str | dict[str, Any] | None = None
    system_prompt: str = ""
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = True
    thinking: dict[str, Any] | None = None
    create_time: UtcTime = Field(default_factory=utc_now)
    update_time: UtcTime = Field(default_factory=utc_now)

    @field_validator("agent_code")
    @classmethod
    def _code(cls, v: str) -> str:
        return check_key(v, "agent_code")

    @field_validator("agent_name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_label(v, "agent_name")

    @field_validator("model_name", "system_prompt")
    @classmethod
    def _text(cls, v: str) -> str:
        return _no_nul(check_text(v, "text"), "text") or ""

    @field_validator("custom_params", "thinking", "response_format")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return _no_nul_json(check_json(v, "json field"), "json field") if v is not None else None


class AgentConfig(BaseModel):
    """An agent row joined with its provider row (the seed's ``config.agent`` / ``config.provider``)."""

    model_config = ConfigDict(frozen=True)
    agent: Agent
    provider: Provider


class LLMApiCall(Entity):
    id: uuid.UUID = Field(default_factory=uuid7)
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    agent_id: uuid.UUID | None = None
    request_message_id: uuid.UUID | None = None
    response_message_id: uuid.UUID | None = None
    model_name: str
    status: ApiCallStatus
    error_message: str | None = None
    error_code: str | None = None
    prompt_tokens: int = Field(default=0, ge=0, le=INT32_MAX)
    completion_tokens: int = Field(default=0, ge=0, le=INT32_MAX)
    total_tokens: int = Field(default=0, ge=0, le=INT32_MAX)
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None
    #: True when the counts were estimated locally because the provider reported none
    tokens_estimated: bool = False
    #: PostgreSQL keeps it as numeric(20, 10): below 10**10, rounded to 10 decimal places
    price: float | None = Field(default=None, ge=0, lt=1e10, allow_inf_nan=False)
    price_details: dict[str, Any] | None = None
    latency_ms: int | None = Field(default=None, ge=0, le=INT32_MAX)
    time_to_first_token_ms: int | None = Field(default=None, ge=0, le=INT32_MAX)
    tokens_per_second: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    provider_response_id: str | None = None
    create_time: UtcTime = Field(default_factory=utc_now)
    #: the OpenTelemetry trace the call ran in (32 hex digits); None when no tracing SDK was configured
    trace_id: str | None = Field(default=None, pattern="^[0-9a-f]{32}$")

    @field_validator("error_message", "error_code", "model_name", "provider_response_id")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        # error texts come from remote servers: keep them storable rather than refusing the row
        if v is None:
            return None
        return v.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")

    @field_validator("error_message")
    @classmethod
    def _redacted(cls, v: str | None) -> str | None:
        # the row outlives the process and is read by `mofa usage` and dashboards: no URL in it keeps a
        # password or a secret parameter, whoever built the message
        return redact_text(v) if v is not None else None

    @field_validator("prompt_tokens_details", "completion_tokens_details", "price_details")
    @classmethod
    def _json(cls, v: Any) -> Any:
        return _no_nul_json(check_json(v, "details"), "details") if v is not None else None


class QueryFilter(Entity):
    """Which api-call records to read; every field is honoured by every store."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    status: ApiCallStatus | None = None
    model_name: str | None = None
    start_time: UtcTime | None = None
    end_time: UtcTime | None = None
    offset: int = Field(default=0, ge=0, le=10_000_000)
    limit: int = Field(default=100, ge=1, le=10_000)

    @field_validator("model_name")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        # the same text rules as the field it is compared with: a name no store can hold matches nothing
        return _no_nul(None if v is None else check_text(v, "model_name"), "model_name")


class UsageStatistics(BaseModel):
    total_calls: int = 0
    calls_by_status: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    total_price: float = 0.0
    avg_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p50_time_to_first_token_ms: float | None = None
    p95_time_to_first_token_ms: float | None = None
    avg_tokens_per_second: float | None = None

    @property
    def success_calls(self) -> int:
        return self.calls_by_status.get("success", 0)

    @property
    def failed_calls(self) -> int:
        return self.total_calls - self.success_calls


class ApiKey(Entity):
    """A tenant API key as stored: its SHA-256 hash, never the key itself (see ``persistence.issue_api_key``)."""

    id: uuid.UUID = Field(default_factory=uuid7)
    tenant_id: uuid.UUID
    #: the user a request made with this key acts as
    user_id: uuid.UUID
    name: str = Field(default="", max_length=200)
    #: hex SHA-256 of the key; kept out of reprs all the same
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$", repr=False)
    #: the key's last 4 characters, so that a person can tell keys apart in a list
    key_hint: str = Field(min_length=1, max_length=8)
    create_time: UtcTime = Field(default_factory=utc_now)
    last_used_time: UtcTime | None = None
    revoke_time: UtcTime | None = None

    @field_validator("name", "key_hint")
    @classmethod
    def _text(cls, v: str) -> str:
        return _no_nul(check_text(v, "text"), "text") or ""

    @property
    def revoked(self) -> bool:
        return self.revoke_time is not None
