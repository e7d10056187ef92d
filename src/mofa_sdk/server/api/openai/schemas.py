"""The request bodies of the OpenAI views, as pydantic models: FastAPI validates them before a route runs, and a
failure is a 400 in OpenAI's shape naming the field (``param``), through the HTTP layer's one error mapping.

What a model cannot say alone (the last input is a user message with text; a content part is text) is checked
by the model's own method and raised as an ``ApiError`` naming the field, before anything is written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ....entities import check_text
from ....errors import MofaError
from ....llm import ChatMessage
from ...http import ApiError

__all__ = [
    "MAX_ITEMS", "ChatRequest", "ConversationCreate", "ConversationUpdate", "InputMessage", "ItemsCreate",
    "ParamError", "ResponseCreate", "Role",
]

#: OpenAI's limit of items in one create
MAX_ITEMS = 20
#: refused with 400 (the run machinery has no tool calls, no n > 1 and no log probabilities)
REFUSED = ("tools", "tool_choice", "functions", "function_call", "audio", "logprobs", "top_logprobs",
           "prediction", "web_search_options")
#: forwarded to the provider as request fields, when given
FORWARDED = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias")

Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ParamError(ApiError):
    """A 400 naming the request field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(400, message, code or "invalid_request", param=param)


# -- chat completions --------------------------------------------------------------------------------------
class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, refusal, …: ignored
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_Part] | None = None

    def text(self, index: int) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ParamError(f"messages[{index}].content: only text parts are supported, got {part.type!r}",
                                 f"messages[{index}].content", code="unsupported_parameter")
        return "".join(p.text or "" for p in self.content)


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields this service reads; any other field is ignored (docs/openai-compatibility.md names them),
    but those it cannot do (:data:`REFUSED`) are refused."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=200)
    messages: list[_ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None
    max_completion_tokens: Annotated[int, Field(gt=0, le=2**31 - 1)] | None = None
    n: Literal[1] | None = None
    response_format: dict[str, Any] | None = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    prediction: Any = None
    web_search_options: Any = None

    @field_validator(*REFUSED)
    @classmethod
    def _refused(cls, value: Any) -> Any:
        if value is not None and value is not False and value != []:
            raise PydanticCustomError("unsupported_parameter", "this service does not support it (no tool calls, "
                                      "audio or log probabilities)")
        return value

    def forwarded(self) -> dict[str, Any]:
        """The sampling fields passed through to the provider's request as they came."""
        extra = self.model_extra or {}
        return {k: extra[k] for k in FORWARDED if extra.get(k) is not None}

    def conversation(self) -> tuple[list[ChatMessage], str]:
        """The messages to forward, and the last user message (what is saved); a 400 naming the field for
        what this service cannot send."""
        forwarded: list[ChatMessage] = []
        last_user: str | None = None
        for i, m in enumerate(self.messages):
            text = m.text(i)
            try:  # before anything is written: the run would create the session before the turn refuses it
                check_text(text, f"messages[{i}].content")
            except MofaError as exc:
                raise ParamError(str(exc), f"messages[{i}].content") from None
            role = _ROLES[m.role]
            forwarded.append(ChatMessage(role=role, content=text))
            if role == "user":
                last_user = text
        if last_user is None or not last_user.strip():
            raise ParamError("messages: the last user message must be non-empty text (it is what is saved)",
                             "messages")
        return forwarded, last_user


# -- conversations and responses ---------------------------------------------------------------------------
def _parts(value: Any) -> Any:
    return [{"type": "input_text", "text": value}] if isinstance(value, str) else value


def _items(value: Any) -> Any:
    return [{"role": "user", "content": value}] if isinstance(value, str) else value


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")  # annotations, …
    type: Literal["input_text", "output_text", "text"]
    text: StrictStr


class _ImagePart(BaseModel):
    """``input_image``: by ``image_url`` (an http(s) or data URL) or by ``file_id`` (refused: no Files API)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["input_image"]
    image_url: StrictStr | None = None
    file_id: StrictStr | None = None
    detail: Literal["auto", "low", "high"] | None = None


class _FilePart(BaseModel):
    """``input_file``: inline (``file_data``), by URL (``file_url``) or by ``file_id``."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["input_file"]
    file_data: StrictStr | None = None
    file_url: StrictStr | None = None
    file_id: StrictStr | None = None
    filename: StrictStr | None = None


_ContentPart = Annotated[_TextPart | _ImagePart | _FilePart, Field(discriminator="type")]


class InputMessage(BaseModel):
    """A message item (``EasyInputMessage`` or ``type: message``): a string or a list of content parts (text,
    and on a user message ``input_image`` / ``input_file``)."""

    model_config = ConfigDict(extra="ignore")  # id, status, phase, …
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[list[_ContentPart], BeforeValidator(_parts)]

    @property
    def pair(self) -> tuple[Role, str]:
        return _ROLES[self.role], "".join(p.text for p in self.content if isinstance(p, _TextPart))

    def check_parts(self, index: int, field: str = "input") -> None:
        """A 400 naming the part for input this service cannot take. Image and file input need the message
        model's parts through the turn engine, which Responses does not pass yet: refused, never dropped."""
        for j, part in enumerate(self.content):
            where = f"{field}[{index}].content[{j}]"
            if isinstance(part, _TextPart):
                continue
            if self.role != "user":
                raise ParamError(f"{where}: {part.type} is only taken in a user message", where, "invalid_value")
            if part.file_id is not None:
                raise ParamError(f"{where}.file_id: file ids are not supported (mofa serve has no Files API); "
                                 "send the content inline or by URL", f"{where}.file_id", "unsupported_parameter")
            raise ParamError(f"{where}: {part.type} is not supported on /v1/responses yet; send text",
                             where, "unsupported_parameter")


Items = Annotated[list[InputMessage], Field(max_length=MAX_ITEMS)]
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[StrictStr, StringConstraints(max_length=512)]],
    Field(max_length=16, description="At most 16 string keys (<= 64 chars) and string values (<= 512 chars)."),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationCreate(_In):
    metadata: Metadata | None = None
    items: Items | None = None


class ConversationUpdate(_In):
    metadata: Metadata


class ItemsCreate(_In):
    items: Annotated[list[InputMessage], Field(min_length=1, max_length=MAX_ITEMS)]


class _TextFormat(_In):
    type: Literal["text"]


class _JsonObjectFormat(_In):
    type: Literal["json_object"]


class _JsonSchemaFormat(_In):
    type: Literal["json_schema"]
    name: Annotated[StrictStr, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]
    description: StrictStr | None = None
    strict: StrictBool | None = None


class _TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # verbosity: accepted and ignored
    format: Annotated[_TextFormat | _JsonObjectFormat | _JsonSchemaFormat, Field(discriminator="type")] | None = None

    def response_format(self) -> dict[str, Any] | None:
        """The format as Chat Completions' ``response_format`` (what the provider is sent); None: plain text."""
        f = self.format
        if f is None or isinstance(f, _TextFormat):
            return None
        if isinstance(f, _JsonObjectFormat):
            return {"type": "json_object"}
        spec: dict[str, Any] = {"name": f.name, "schema": f.schema_}
        if f.description is not None:
            spec["description"] = f.description
        if f.strict is not None:
            spec["strict"] = f.strict
        return {"type": "json_schema", "json_schema": spec}

    def echoed(self) -> dict[str, Any] | None:
        """The format as the request gave it (kept with the response; None: plain text)."""
        return None if self.format is None else self.format.model_dump(by_alias=True, exclude_none=True)


def _conversation_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


class ResponseCreate(_In):
    """``POST /v1/responses``: the parameters read, and those accepted and ignored (docs/openai-compatibility.md)."""

    input: Annotated[list[InputMessage], BeforeValidator(_items), Field(min_length=1)]
    instructions: StrictStr | None = None
    model: StrictStr | None = None
    stream: StrictBool | None = None
    store: StrictBool | None = None
    previous_response_id: StrictStr | None = None
    conversation: Annotated[StrictStr, BeforeValidator(_conversation_id)] | None = None
    metadata: Metadata | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=True)] | None = None
    background: StrictBool | None = None
    text: _TextConfig | None = None
    tools: list[Any] | None = None
    # forwarded to the provider, and reported in the response
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    # echoed in the response
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=0, description="log probabilities are not returned: 0 only")] \
        | None = None
    max_tool_calls: Annotated[StrictInt, Field(ge=1)] | None = None
    prompt_cache_key: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    safety_identifier: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    user: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    reasoning: dict[str, Any] | None = None
    # accepted and ignored
    truncation: Any = None
    parallel_tool_calls: Any = None
    include: Any = None
    service_tier: Any = None
    stream_options: Any = None
    tool_choice: Any = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tools are not supported by mofa serve")
        return value

    def turn(self) -> tuple[list[tuple[Role, str]], str]:
        """The input items before the last (saved as they are), and the last one's text (the turn's user
        message); a 400 for what the schema alone cannot refuse."""
        if self.previous_response_id and self.conversation:
            raise ParamError("previous_response_id and conversation cannot both be given", "previous_response_id",
                             "invalid_value")
        for i, m in enumerate(self.input):
            m.check_parts(i)
        pairs = [m.pair for m in self.input]
        role, text = pairs[-1]
        if role != "user" or not text.strip():
            raise ParamError("the last input item must be a user message with text", "input", "invalid_value")
        return pairs[:-1], text
