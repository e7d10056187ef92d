"""``mofa chat --functions FILE.py``: a Python file's top-level public functions as the agent's tools, and the
compact lines the chat prints for tool calls and results."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import uuid
from pathlib import Path

from ..errors import ConfigError
from ..llm import Tool, ToolCall, ToolResult, tool

__all__ = ["call_line", "load_functions", "result_line"]

#: how much of a call's arguments or a result one status line shows
_CLIP = 100


def load_functions(path: str) -> list[Tool]:
    """The tools made of the functions ``path`` defines at its top level whose names do not start with ``_``
    (imported names are left out). The file runs as a module, once; a ConfigError says what went wrong."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--functions {path}: no such file")
    name = f"mofa_functions_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--functions {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing.get_type_hints look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"--functions {path}: running the file failed: {type(exc).__name__}: {exc}") from None
    functions = [
        value for key, value in vars(module).items()
        if not key.startswith("_") and inspect.isfunction(value) and value.__module__ == name
    ]  # fmt: skip
    if not functions:
        raise ConfigError(f"--functions {path}: the file defines no public function (one not starting with _)")
    tools: list[Tool] = []
    for function in functions:
        try:
            tools.append(tool(function))
        except ConfigError as exc:
            raise ConfigError(f"--functions {path}: {exc}") from None
    return tools


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _CLIP else flat[: _CLIP - 1] + "…"


def call_line(call: ToolCall) -> str:
    """``⚙ get_weather({"city": "Paris"})``."""
    return f"⚙ {call.name}({_clip(call.arguments)})"


def result_line(name: str, result: ToolResult) -> str:
    """``↳ get_weather: sunny`` (``✗`` for an error result)."""
    mark = "✗" if result.is_error else "↳"
    return f"  {mark} {name}: {_clip(result.content)}"
