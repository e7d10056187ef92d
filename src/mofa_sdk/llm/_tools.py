"""A tool the model can call, made from a plain Python function: its JSON schema comes from the signature and
the docstring (by pydantic), and a call's JSON arguments are validated into the function's parameters.

``Annotated[int, Field(description=..., ge=0)]``, defaults, ``X | None``, ``Literal``, enums, nested pydantic
models, lists and dicts work as pydantic knows them. Parameter descriptions may also come from the docstring
(Google style ``Args:`` or ``:param name:``). No I/O here: running the function is the caller's business
(:meth:`Tool.call` awaits it, a sync function in a worker thread).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError

from ..errors import ConfigError, ToolArgumentsError
from ._messages import ToolCall, ToolResult

__all__ = ["Tool", "ToolSpec", "tool"]

#: the name rule of OpenAI's function calling (and most servers copying it)
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_GOOGLE_PARAM = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
#: schema keywords whose value maps names to schemas, and those whose value is data (left as it is)
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_VALUES = frozenset({"default", "const", "enum", "examples"})


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told of a tool: its ``name``, ``description`` and ``parameters`` (a JSON schema
    object). Enough for a request (``ChatParams.tools``) when the caller runs the tools itself; a
    :class:`Tool` is a spec with the function that runs."""

    name: str
    description: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"a tool name must be 1-64 letters, digits, '_' or '-', got {self.name!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"tool {self.name}: the description must be a str")
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise ConfigError(f"tool {self.name}: parameters must be a JSON schema of type 'object'")

    @classmethod
    def from_openai(cls, entry: object) -> ToolSpec:
        """The spec of an OpenAI ``tools`` entry (``{"type": "function", "function": {name, description?,
        parameters?}}``), as a client of ``mofa serve`` sends it; :class:`ConfigError` for anything else."""
        function = entry.get("function") if isinstance(entry, dict) and entry.get("type") == "function" else None
        if not isinstance(function, dict):
            raise ConfigError('a tool must be {"type": "function", "function": {"name": ..., "parameters": ...}}')
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        return cls(function.get("name"), function.get("description") or "", parameters)  # type: ignore[arg-type]

    def openai_schema(self) -> dict[str, Any]:
        """The entry for OpenAI's ``tools=[...]``: ``{"type": "function", "function": {...}}``."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class Tool(ToolSpec):
    """A function the model may call: the spec the model sees, and ``function``, what runs. Build one with
    :meth:`from_function` or :func:`tool`."""

    function: Callable[..., Any]
    is_async: bool
    _model: type[BaseModel] = field(repr=False)
    #: the model's field name for each parameter (fields are renamed: a parameter may be called ``json``)
    _fields: tuple[tuple[str, str], ...] = field(repr=False)

    @classmethod
    def from_function(
        cls, function: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """The tool for ``function``; :class:`ConfigError` for ``*args``/``**kwargs``, positional-only or
        unannotated parameters and types no JSON schema describes."""
        if not callable(function):
            raise ConfigError(f"a tool must be a function, got {type(function).__name__}")
        label = getattr(function, "__qualname__", None) or repr(function)
        name = name if name is not None else getattr(function, "__name__", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"tool {label}: the name {name!r} must be 1-64 letters, digits, '_' or '-' "
                              "(pass name=...)")
        try:
            signature = inspect.signature(function)
            hints = typing.get_type_hints(function, include_extras=True)
        except (TypeError, ValueError, NameError) as exc:
            raise ConfigError(f"tool {name}: cannot read the signature of {label} ({exc})") from None
        summary, param_docs = _read_docstring(inspect.getdoc(function) or "")
        fields: dict[str, Any] = {}
        names: list[tuple[str, str]] = []
        for position, param in enumerate(signature.parameters.values()):
            where = f"tool {name}: parameter {param.name!r} of {label}"
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                star = "*" if param.kind is param.VAR_POSITIONAL else "**"
                raise ConfigError(f"{where}: {star}{param.name} cannot be described to a model; "
                                  "name every parameter")
            if param.kind is param.POSITIONAL_ONLY:
                raise ConfigError(f"{where} is positional-only; the model passes arguments by name")
            if param.name not in hints:
                raise ConfigError(f"{where} has no type annotation; annotate it (e.g. `{param.name}: str`)")
            default: Any = ... if param.default is param.empty else param.default
            doc = None if _described(hints[param.name]) else param_docs.get(param.name)
            # a description=None would override the one an Annotated Field gives
            info = Field(default, alias=param.name, description=doc) if doc else Field(default, alias=param.name)
            fields[f"p{position}"] = (hints[param.name], info)
            names.append((f"p{position}", param.name))
        try:
            model = create_model(
                f"{name}_arguments", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields
            )
            schema = _clean(model.model_json_schema(by_alias=True))
        except (PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"tool {name} ({label}): a parameter's type has no JSON schema: {first}") from None
        if description is None:
            description = summary
        return cls(name, description, schema, function, _is_async(function), model, tuple(names))

    def validate_arguments(self, arguments: str | ToolCall) -> dict[str, Any]:
        """The keyword arguments for the function from a call's JSON text (blank text is ``{}``, what some
        servers send for a call without parameters). :class:`ToolArgumentsError` says what did not fit, in
        words a model can act on."""
        call_id = ""
        if isinstance(arguments, ToolCall):
            call_id = f" (call {arguments.id!r})"
            arguments = arguments.arguments
        text = arguments if arguments.strip() else "{}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(f"tool {self.name}{call_id}: the arguments are not valid JSON ({exc.msg} at "
                                     f"character {exc.pos})") from None
        if not isinstance(data, dict):
            raise ToolArgumentsError(f"tool {self.name}{call_id}: the arguments must be a JSON object, got "
                                     f"{type(data).__name__}")
        try:
            model = self._model.model_validate(data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors(include_url=False))
            raise ToolArgumentsError(f"tool {self.name}{call_id}: bad arguments: {problems}") from None
        return {param: getattr(model, field) for field, param in self._fields}

    async def call(self, arguments: str | ToolCall) -> Any:
        """Validates the arguments and runs the function: awaited when async, in a worker thread when not."""
        kwargs = self.validate_arguments(arguments)
        if self.is_async:
            return await self.function(**kwargs)
        return await asyncio.to_thread(self.function, **kwargs)

    async def run(self, call: ToolCall) -> ToolResult:
        """The result for ``call``: the function's value as text, or ``is_error`` with the reason when the
        arguments do not fit or the function raised. Cancellation is not caught."""
        try:
            value = await self.call(call)
        except ToolArgumentsError as exc:
            return ToolResult(call.id, str(exc), is_error=True)
        except Exception as exc:
            return ToolResult(call.id, f"tool {self.name} failed: {type(exc).__name__}: {exc}", is_error=True)
        return ToolResult(call.id, result_text(value))


def tool(function: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
    """``tool(fn)`` is ``Tool.from_function(fn)``."""
    return Tool.from_function(function, name=name, description=description)


def result_text(value: Any) -> str:
    """What the model reads of a tool's return value: a str as it is, anything else as JSON (pydantic models,
    dataclasses and dates included)."""
    if isinstance(value, str):
        return value
    try:
        return pydantic.TypeAdapter(Any).dump_json(value).decode()
    except PydanticSerializationError:
        return str(value)


def _described(hint: Any) -> bool:
    """Whether ``Annotated[..., Field(description=...)]`` describes the parameter (it wins over the docstring)."""
    if typing.get_origin(hint) is not typing.Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in hint.__metadata__)


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - a callable object's async __call__
    return inspect.iscoroutinefunction(call)


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        message = "no such parameter"
    return f"{where}: {message}"


def _read_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and each parameter's description."""
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    param_indent: int | None = None  # a Google-style entry's indent; deeper lines continue it
    for line in doc.splitlines():
        indent = len(line) - len(line.lstrip())
        sphinx = _SPHINX_PARAM.match(line)
        if sphinx:
            section, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            continue
        heading = _SECTION.match(line)
        if heading:
            section, current, param_indent = heading.group(1).lower(), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if not line.strip():
            continue
        google = _GOOGLE_PARAM.match(line) if section in ("args", "arguments", "parameters") else None
        if google and (param_indent is None or indent <= param_indent):
            current, param_indent = google.group(1).lstrip("*"), indent
            params[current] = google.group(2).strip()
        elif current is not None and (section != "sphinx" or indent > 0):
            params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "sphinx":
            current = None
    return "\n".join(summary).strip(), {k: v for k, v in params.items() if v}


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's schema without the generated titles (noise to a model, and tokens on every request)."""

    def walk(node: Any, names: bool) -> Any:
        if isinstance(node, list):
            return [walk(item, False) for item in node]
        if not isinstance(node, dict):
            return node
        if names:  # the keys are property or definition names, the values schemas
            return {key: walk(value, False) for key, value in node.items()}
        return {
            key: value if key in _VALUES else walk(value, key in _NAMED)
            for key, value in node.items()
            if key != "title"
        }

    out: dict[str, Any] = walk(schema, False)
    out.setdefault("properties", {})
    return out
