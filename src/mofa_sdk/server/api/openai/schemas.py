"""The request bodies of the OpenAI views, as pydantic models: FastAPI validates them before a route runs, and a
failure is a 400 in OpenAI's shape naming the field (``param``), through the HTTP layer's one error mapping.

What a model cannot say alone (the last input is a user message with text; a content part is text) is checked
by the model's own method and raised as an ``ApiError`` naming the field, before anything is written.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ....entities import check_text
from ....errors import ConfigError, MofaError
from ....llm import ChatMessage, ContentPart, FilePart, ImagePart, TextPart, ToolCall, ToolSpec, check_tool_sequence
from ....persistence import COMPACTION_ASK
from ...http import ApiError

__all__ = [
    "MAX_ITEMS", "ChatRequest", "CompactionItem", "ConversationCreate", "ConversationUpdate", "FunctionCallItem",
    "FunctionCallOutputItem", "InputItem", "InputMessage", "ItemsCreate", "ParamError", "ResponseCreate", "Role",
]

#: OpenAI's limit of items in one create
MAX_ITEMS = 20
#: refused with 400 (no n > 1, no audio, no log probabilities; the legacy ``functions``/``function_call``:
#: send ``tools``/``tool_choice``, which every current client does)
REFUSED = ("functions", "function_call", "audio", "logprobs", "top_logprobs", "prediction", "web_search_options")
#: forwarded to the provider as request fields, when given
FORWARDED = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias")

Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ParamError(ApiError):
    """A 400 naming the request field at fault (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(400, message, code or "invalid_request", param=param)


# -- chat completions --------------------------------------------------------------------------------------
class _ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: StrictStr
    detail: Literal["auto", "low", "high"] | None = None


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: _ImageUrl | None = None


class _Function(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: StrictStr
    arguments: StrictStr = "{}"


class _ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictStr
    type: Literal["function"] = "function"
    function: _Function


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, refusal, …: ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None
    tool_calls: list[_ToolCallIn] | None = None
    tool_call_id: StrictStr | None = None

    def parts(self, index: int) -> list[ContentPart]:
        """The content as parts: text (a string is one) and, in a user message, images."""
        if self.content is None or isinstance(self.content, str):
            return [TextPart(self.content or "")]
        out: list[ContentPart] = []
        for k, part in enumerate(self.content):
            where = f"messages[{index}].content[{k}]"
            if part.type in ("text", "input_text", "output_text") and part.text is not None:
                out.append(TextPart(part.text))
            elif part.type == "image_url" and part.image_url is not None and self.role == "user":
                try:
                    out.append(ImagePart(part.image_url.url, part.image_url.detail))
                except MofaError as exc:
                    raise ParamError(str(exc), where) from None
            else:
                raise ParamError(f"{where}: only text parts (and image_url parts in a user message) are "
                                 f"supported, got {part.type!r}", where, code="unsupported_parameter")
        return out

    def chat_message(self, index: int) -> ChatMessage:
        """The message as the llm layer's (checked: a 400 naming it)."""
        parts = self.parts(index)
        text = "".join(p.text for p in parts if isinstance(p, TextPart))
        try:  # before anything is written: the run would create the session before the turn refuses it
            check_text(text, f"messages[{index}].content")
        except MofaError as exc:
            raise ParamError(str(exc), f"messages[{index}].content") from None
        try:
            if self.role == "tool":
                if not self.tool_call_id:
                    raise ParamError(f"messages[{index}]: a tool message needs the tool_call_id of the call it "
                                     "answers", f"messages[{index}].tool_call_id")
                return ChatMessage(role="tool", content=text, tool_call_id=self.tool_call_id)
            if self.tool_call_id is not None:
                raise ParamError(f"messages[{index}]: tool_call_id belongs to a tool message",
                                 f"messages[{index}].tool_call_id")
            if self.tool_calls:
                if self.role != "assistant":
                    raise ParamError(f"messages[{index}]: only an assistant message makes tool calls",
                                     f"messages[{index}].tool_calls")
                calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls)
                return ChatMessage(role="assistant", content=text, tool_calls=calls)
            if any(isinstance(p, ImagePart) for p in parts):
                if not text.strip():
                    raise ParamError(f"messages[{index}].content: a user message with images needs text too",
                                     f"messages[{index}].content")
                return ChatMessage(role="user", content="", parts=_joined(parts))
            return ChatMessage(role=_ROLES[self.role], content=text)
        except ParamError:
            raise
        except MofaError as exc:
            raise ParamError(str(exc), f"messages[{index}]") from None


def _joined(parts: list[ContentPart]) -> tuple[ContentPart, ...]:
    """Adjacent text parts as one (OpenAI joins them with nothing between), so the message's text is the
    request's text exactly."""
    out: list[ContentPart] = []
    for p in parts:
        if isinstance(p, TextPart) and out and isinstance(out[-1], TextPart):
            out[-1] = TextPart(out[-1].text + p.text)
        else:
            out.append(p)
    return tuple(out)


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
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
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
            raise PydanticCustomError("unsupported_parameter", "this service does not support it (no audio or log "
                                      "probabilities; send tools and tool_choice instead of the legacy functions "
                                      "and function_call)")
        return value

    def forwarded(self) -> dict[str, Any]:
        """The sampling fields passed through to the provider's request as they came."""
        extra = self.model_extra or {}
        return {k: extra[k] for k in FORWARDED if extra.get(k) is not None}

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """``tools`` as specs (each a function tool); a 400 naming the entry otherwise."""
        specs: list[ToolSpec] = []
        for i, entry in enumerate(self.tools or ()):
            function = entry.get("function")
            if isinstance(function, dict) and function.get("parameters") == {}:  # what OpenAI reads as none
                entry = {**entry, "function": {**function, "parameters": {"type": "object", "properties": {}}}}
            try:
                specs.append(ToolSpec.from_openai(entry))
            except ConfigError as exc:
                raise ParamError(f"tools[{i}]: {exc}", f"tools[{i}]") from None
        names = [t.name for t in specs]
        if len(set(names)) != len(names):
            raise ParamError(f"tools: two tools have the same name ({sorted(names)})", "tools")
        return tuple(specs)

    def choice(self, specs: tuple[ToolSpec, ...]) -> str | None:
        """``tool_choice`` as the llm layer's: "auto", "none", "required" or a tool's name."""
        c = self.tool_choice
        if isinstance(c, dict):
            function = c.get("function") if c.get("type") == "function" else None
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str):
                raise ParamError('tool_choice must be "auto", "none", "required" or {"type": "function", '
                                 '"function": {"name": ...}}', "tool_choice")
            c = name
            if name not in {t.name for t in specs}:
                raise ParamError(f"tool_choice names the function {name!r}, which is not among tools",
                                 "tool_choice")
        elif c is not None and c not in ("auto", "none", "required"):
            raise ParamError(f'tool_choice must be "auto", "none" or "required", got {c!r}', "tool_choice")
        if c == "required" and not specs:
            raise ParamError('tool_choice "required" needs tools', "tool_choice")
        return c

    def conversation(self) -> list[ChatMessage]:
        """The messages to forward, as the llm layer's; a 400 naming the message for what this service cannot
        send, and for tool calls and results that do not fit (a strict provider would refuse them)."""
        forwarded = [m.chat_message(i) for i, m in enumerate(self.messages)]
        if any(m.tool_calls or m.role == "tool" for m in forwarded):
            try:
                check_tool_sequence(forwarded)
            except MofaError as exc:
                found = re.search(r"request message (\d+)", str(exc))
                where = f"messages[{found.group(1)}]" if found else "messages"
                raise ParamError(re.sub(r"request message (\d+)", r"messages[\1]", str(exc)), where) from None
        return forwarded


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

    def parts(self, index: int, field: str = "input") -> list[ContentPart]:
        """The content as the llm layer's parts (text, and on a user message images); a 400 naming the part for
        input this service cannot take: refused, never dropped."""
        out: list[ContentPart] = []
        for j, part in enumerate(self.content):
            where = f"{field}[{index}].content[{j}]"
            if isinstance(part, _TextPart):
                out.append(TextPart(part.text))
                continue
            if self.role != "user":
                raise ParamError(f"{where}: {part.type} is only taken in a user message", where, "invalid_value")
            if part.file_id is not None:
                raise ParamError(f"{where}.file_id: file ids are not supported (mofa serve has no Files API); "
                                 "send the content inline or by URL", f"{where}.file_id", "unsupported_parameter")
            if isinstance(part, _ImagePart) and part.image_url is not None:
                try:
                    out.append(ImagePart(part.image_url, part.detail))
                except MofaError as exc:
                    raise ParamError(f"{where}.image_url: {exc}", f"{where}.image_url") from None
                continue
            if isinstance(part, _ImagePart):
                raise ParamError(f"{where}: an input_image needs image_url", f"{where}.image_url",
                                 "missing_required_parameter")
            out.append(_file(part, where))
        return out

    def has_parts(self) -> bool:
        return any(not isinstance(p, _TextPart) for p in self.content)

    def check_parts(self, index: int, field: str = "input") -> None:
        """A 400 naming the part for input this service cannot take."""
        self.parts(index, field)

    def chat_message(self) -> ChatMessage:
        """The message as the llm layer's: a user message with images carries them as parts (its text is its
        text parts joined by newlines, as the message model has it)."""
        role, text = self.pair
        if not self.has_parts():
            return ChatMessage(role=role, content=text)
        parts = self.parts(0)
        return ChatMessage(role="user", content="", parts=_joined(parts))


def _file(part: _FilePart, where: str) -> FilePart:
    """An ``input_file`` as the message model's file part: inline only (the provider's Chat Completions takes
    a file's data, not its URL, and this service fetches nothing)."""
    if part.file_url is not None:
        raise ParamError(f"{where}.file_url: files by URL are not supported (the provider takes a file's "
                         "content, and mofa serve fetches nothing); send file_data", f"{where}.file_url",
                         "unsupported_parameter")
    if part.file_data is None or part.filename is None:
        missing = "file_data" if part.file_data is None else "filename"
        raise ParamError(f"{where}: an input_file needs file_data and filename", f"{where}.{missing}",
                         "missing_required_parameter")
    try:
        return FilePart(part.filename, part.file_data)
    except MofaError as exc:
        raise ParamError(f"{where}.file_data: {exc}", f"{where}.file_data") from None


class FunctionCallItem(BaseModel):
    """A ``function_call`` item: a call the model made (sent back by a client that keeps its context)."""

    model_config = ConfigDict(extra="ignore")  # id, status
    type: Literal["function_call"]
    call_id: Annotated[StrictStr, Field(min_length=1)]
    name: Annotated[StrictStr, Field(min_length=1)]
    arguments: StrictStr

    def chat_message(self) -> ChatMessage:
        return ChatMessage(role="assistant", content="", tool_calls=(ToolCall(self.call_id, self.name,
                                                                              self.arguments),))


class FunctionCallOutputItem(BaseModel):
    """A ``function_call_output`` item: the client's result for a call."""

    model_config = ConfigDict(extra="ignore")  # id, status
    type: Literal["function_call_output"]
    call_id: Annotated[StrictStr, Field(min_length=1)]
    output: StrictStr | list[_TextPart]

    def chat_message(self) -> ChatMessage:
        text = self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)
        return ChatMessage(role="tool", content=text, tool_call_id=self.call_id)


class CompactionItem(BaseModel):
    """A ``compaction`` item (``/v1/responses/compact``'s output, given back as input): it stands for the
    conversation before it, and is sent (and saved) as the window sends a stored compaction, a round of its own:
    the question a compaction answers and the summary as the model's answer. Its ``encrypted_content`` is this
    service's plain summary (a compaction of another service cannot be read: it is sent as it came)."""

    model_config = ConfigDict(extra="ignore")  # id, created_by
    type: Literal["compaction"]
    encrypted_content: Annotated[StrictStr, Field(min_length=1)]

    def chat_messages(self) -> list[ChatMessage]:
        return [ChatMessage(role="user", content=COMPACTION_ASK),
                ChatMessage(role="assistant", content=self.encrypted_content)]


def _item_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"<{kind}>" if kind in ("function_call", "function_call_output", "compaction") else "<message>"


#: an input item, chosen by its ``type`` (none: a message); a bad one is named by its own field (the HTTP
#: layer leaves the "<tag>" out of ``param``)
InputItem = Annotated[
    Annotated[InputMessage, Tag("<message>")] | Annotated[FunctionCallItem, Tag("<function_call>")]
    | Annotated[FunctionCallOutputItem, Tag("<function_call_output>")]
    | Annotated[CompactionItem, Tag("<compaction>")],
    Discriminator(_item_kind),
]
Items = Annotated[list[InputItem], Field(max_length=MAX_ITEMS)]
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
    items: Annotated[list[InputItem], Field(min_length=1, max_length=MAX_ITEMS)]


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

    input: Annotated[list[InputItem], BeforeValidator(_items), Field(min_length=1)]
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
    #: function tools (``{"type": "function", "name", "parameters", …}``): sent, never run here
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    #: 0: no calls (tool_choice "none"); 1: one call per response (no parallel calls)
    max_tool_calls: Annotated[StrictInt, Field(ge=0)] | None = None
    # forwarded to the provider, and reported in the response
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    # echoed in the response
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=0, description="log probabilities are not returned: 0 only")] \
        | None = None
    prompt_cache_key: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    safety_identifier: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    user: Annotated[StrictStr, StringConstraints(max_length=256)] | None = None
    reasoning: dict[str, Any] | None = None
    # accepted and ignored
    truncation: Any = None
    include: Any = None
    service_tier: Any = None
    stream_options: Any = None

    def turn(self) -> tuple[list[InputItem], str | None, tuple[ContentPart, ...]]:
        """The input items saved before the turn's user message, its text and its input parts (images; none for
        text alone); None when the input ends with ``function_call_output`` items (the client's results: every
        item is saved, no user message). A 400 for what the schema alone cannot refuse."""
        if self.previous_response_id and self.conversation:
            raise ParamError("previous_response_id and conversation cannot both be given", "previous_response_id",
                             "invalid_value")
        for i, m in enumerate(self.input):
            if isinstance(m, InputMessage):
                m.check_parts(i)
        last = self.input[-1]
        if isinstance(last, FunctionCallOutputItem):
            return list(self.input), None, ()
        if not isinstance(last, InputMessage) or last.pair[0] != "user" or not last.pair[1].strip():
            raise ParamError("the last input item must be a user message with text, or function_call_output "
                             "items", "input", "invalid_value")
        user = last.chat_message()
        return list(self.input[:-1]), user.content, user.parts
