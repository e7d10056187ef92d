"""What a message carries beside its text: the tool calls an assistant makes, the result a ``tool`` message
answers, and the non-text input parts of a user message. Pure data, no I/O.

Everything is kept as the model or the caller gave it: a call's arguments are the JSON text the model produced
(never parsed and re-serialised, so a history sent back is byte-identical), an image URL is not fetched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import ToolArgumentsError, ValidationError

__all__ = [
    "ContentPart",
    "FilePart",
    "ImagePart",
    "TextPart",
    "ToolCall",
    "ToolResult",
    "check_tool_sequence",
    "parts_from_json",
    "parts_to_json",
    "tool_calls_from_json",
    "tool_calls_to_json",
]

_IMAGE_SCHEMES = ("http://", "https://", "data:")


def _need_str(value: object, what: str, *, empty: bool = True) -> None:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a str, got {type(value).__name__}")
    if not empty and not value:
        raise ValidationError(f"{what} must not be empty")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call an assistant message makes. ``arguments`` is the JSON text the model produced, verbatim: a
    call cut mid-stream keeps its partial text, and :attr:`arguments_valid` says it is not JSON."""

    id: str
    name: str
    arguments: str = "{}"

    def __post_init__(self) -> None:
        _need_str(self.id, "ToolCall.id", empty=False)
        _need_str(self.name, f"the name of tool call {self.id!r}", empty=False)
        _need_str(self.arguments, f"the arguments of tool call {self.id!r} ({self.name})")

    @property
    def arguments_valid(self) -> bool:
        """True when ``arguments`` is a JSON object (what every function-calling API sends)."""
        try:
            return isinstance(json.loads(self.arguments), dict)
        except ValueError:
            return False

    def parse_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; :class:`ToolArgumentsError` when they are not a JSON object."""
        try:
            value = json.loads(self.arguments)
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(
                f"the arguments of tool call {self.id!r} ({self.name}) are not valid JSON ({exc.msg} at "
                f"character {exc.pos}): {_clip(self.arguments)}"
            ) from None
        if not isinstance(value, dict):
            raise ToolArgumentsError(
                f"the arguments of tool call {self.id!r} ({self.name}) must be a JSON object, got "
                f"{type(value).__name__}: {_clip(self.arguments)}"
            )
        return value


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool answered to one call; a ``tool`` message carries it (``ChatMessage.tool_result``)."""

    tool_call_id: str
    content: str
    #: the tool failed (it raised, its arguments did not fit, it was interrupted): the model sees the text
    is_error: bool = False

    def __post_init__(self) -> None:
        _need_str(self.tool_call_id, "ToolResult.tool_call_id", empty=False)
        _need_str(self.content, f"the content of the result for tool call {self.tool_call_id!r}")
        if not isinstance(self.is_error, bool):
            raise ValidationError(f"ToolResult.is_error must be a bool, got {type(self.is_error).__name__}")


@dataclass(frozen=True, slots=True)
class TextPart:
    """A text piece of a user message that has more than text."""

    text: str

    def __post_init__(self) -> None:
        _need_str(self.text, "TextPart.text")


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image input, by ``http(s)://`` URL or ``data:`` URL, kept exactly as given (never fetched)."""

    url: str
    #: OpenAI's resolution hint; None sends none
    detail: Literal["auto", "low", "high"] | None = None

    def __post_init__(self) -> None:
        _need_str(self.url, "ImagePart.url", empty=False)
        if not self.url.startswith(_IMAGE_SCHEMES):
            raise ValidationError(f"ImagePart.url must be an http(s):// or data: URL, got {_clip(self.url, 40)}")
        if self.detail not in (None, "auto", "low", "high"):
            raise ValidationError(f"ImagePart.detail must be 'auto', 'low', 'high' or None, got {self.detail!r}")


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file input (a PDF, …) sent inline: its name and its content as a ``data:`` URL
    (``data:application/pdf;base64,…``), kept exactly as given. Sent as Chat Completions' ``file`` part."""

    filename: str
    data: str

    def __post_init__(self) -> None:
        _need_str(self.filename, "FilePart.filename", empty=False)
        _need_str(self.data, "FilePart.data", empty=False)
        if not self.data.startswith("data:"):
            raise ValidationError(f"FilePart.data must be a data: URL (data:<media type>;base64,…), got "
                                  f"{_clip(self.data, 40)}")

    @property
    def media_type(self) -> str:
        """The media type the data URL names (``application/octet-stream`` when it names none)."""
        head = self.data[5:].split(",", 1)[0].split(";", 1)[0]
        return head or "application/octet-stream"


ContentPart = TextPart | ImagePart | FilePart


# -- JSON for a stored row's columns: exact round trips, so the store needs no schema of its own ---------------


def tool_calls_to_json(calls: Sequence[ToolCall]) -> str:
    """``[{"id", "name", "arguments"}, ...]``; the arguments stay the model's text (a JSON string value)."""
    return json.dumps([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
                      ensure_ascii=False)


def tool_calls_from_json(text: str) -> tuple[ToolCall, ...]:
    """The inverse of :func:`tool_calls_to_json`; :class:`ValidationError` for anything else."""
    items = _json_list(text, "tool calls")
    try:
        return tuple(ToolCall(item["id"], item["name"], item["arguments"]) for item in items)
    except (KeyError, TypeError):
        raise ValidationError(f"stored tool calls are not [{{id, name, arguments}}, ...]: {_clip(text)}") from None


def parts_to_json(parts: Sequence[ContentPart]) -> str:
    """``[{"type": "text", "text"} | {"type": "image", "url", "detail"?} | {"type": "file", "filename",
    "data"}, ...]``."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, FilePart):
            out.append({"type": "file", "filename": part.filename, "data": part.data})
        else:
            image: dict[str, Any] = {"type": "image", "url": part.url}
            if part.detail is not None:
                image["detail"] = part.detail
            out.append(image)
    return json.dumps(out, ensure_ascii=False)


def parts_from_json(text: str) -> tuple[ContentPart, ...]:
    """The inverse of :func:`parts_to_json`; :class:`ValidationError` for anything else."""
    out: list[ContentPart] = []
    for item in _json_list(text, "input parts"):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text" and "text" in item:
            out.append(TextPart(item["text"]))
        elif kind == "image" and "url" in item:
            out.append(ImagePart(item["url"], item.get("detail")))
        elif kind == "file" and "filename" in item and "data" in item:
            out.append(FilePart(item["filename"], item["data"]))
        else:
            raise ValidationError(f"stored input parts hold an unknown part: {_clip(json.dumps(item))}")
    return tuple(out)


def _json_list(text: str, what: str) -> list[Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise ValidationError(f"stored {what} are not JSON: {_clip(str(text))}") from None
    if not isinstance(value, list):
        raise ValidationError(f"stored {what} are not a JSON list: {_clip(text)}")
    return value


def _clip(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _Message(Protocol):
    """What :func:`check_tool_sequence` reads of a message (``ChatMessage`` has it)."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def tool_calls(self) -> tuple[ToolCall, ...]: ...
    @property
    def tool_call_id(self) -> str | None: ...


def check_tool_sequence(messages: Sequence[_Message]) -> None:
    """Refuse a message list that strict providers (OpenAI among them) answer with 400: a ``tool`` message
    that answers no call of the assistant message before it, a call left unanswered before the next
    non-tool message or the end, a call id used twice, an assistant message with neither text nor calls.

    Raises :class:`ValidationError` naming the message. The window and the agent call this before sending.
    """
    open_calls: dict[str, str] = {}
    seen: set[str] = set()
    for index, message in enumerate(messages):
        if message.role == "tool":
            wanted = message.tool_call_id
            if wanted not in open_calls:
                why = "was answered already" if wanted in seen else "was made by no assistant message before it"
                raise ValidationError(f"request message {index}: the tool result for call {wanted!r} answers "
                                      f"nothing (that call {why})")
            del open_calls[wanted]
            continue
        if open_calls:
            raise ValidationError(_unanswered(open_calls, index))
        if message.role == "assistant":
            if not message.content and not message.tool_calls:
                raise ValidationError(f"request message {index}: an assistant message with neither text nor "
                                      "tool calls")
            for call in message.tool_calls:
                if call.id in seen:
                    raise ValidationError(f"request message {index}: tool call id {call.id!r} is used twice")
                seen.add(call.id)
                open_calls[call.id] = call.name
    if open_calls:
        raise ValidationError(_unanswered(open_calls, None))


def _unanswered(open_calls: dict[str, str], index: int | None) -> str:
    calls = ", ".join(f"{call_id!r} ({name})" for call_id, name in open_calls.items())
    where = "the end of the request" if index is None else f"request message {index}"
    return f"tool call(s) {calls} have no tool result before {where}"
