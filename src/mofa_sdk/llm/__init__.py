"""Agents, providers and streams.

``OpenAICompatibleProvider``, ``LocalProvider`` and ``find_default_model`` are imported on first use, so
that ``import mofa_sdk.llm`` does not pay for the ``openai`` SDK or ``llama_cpp`` until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._agent import LLMAgent, TurnOverrides
from ._builder import LLMAgentBuilder, default_provider
from ._hooks import EventHandler, OpenedSession, SessionBackend, SessionInfo, SettingsBackend, Settle
from ._loop import AgentEvent, StepFinished, ToolResultEvent, ToolStep
from ._messages import ContentPart, FilePart, ImagePart, TextPart, ToolCall, ToolResult, check_tool_sequence
from ._provider import (
    ChatParams,
    Finish,
    LLMProvider,
    ProviderDefaults,
    ProviderEvent,
    StreamStarted,
    TextDelta,
    UsageReport,
)
from ._scripted import ScriptedProvider
from ._settings import provider_label, settings_changes, settle_settings
from ._stream import ChatStream
from ._toolcalls import ToolCallAccumulator, ToolCallArgumentsDelta, ToolCallFinished, ToolCallStarted
from ._tools import Tool, ToolSpec, tool
from ._tracing import capture_content, current_trace_id, traced, tracing_enabled
from ._types import ChatMessage, StreamLimits, Turn, TurnResult, Usage
from ._window import INTERRUPTED_TOOL_RESULT, select_window, settle_tool_messages, trim_history

if TYPE_CHECKING:
    from ._local import LOCAL_MAX_TOKENS, LocalProvider, find_default_model
    from ._openai import OpenAICompatibleProvider

__all__ = [
    "INTERRUPTED_TOOL_RESULT",
    "LOCAL_MAX_TOKENS",
    "AgentEvent",
    "ChatMessage",
    "ChatParams",
    "ChatStream",
    "ContentPart",
    "EventHandler",
    "FilePart",
    "Finish",
    "ImagePart",
    "LLMAgent",
    "LLMAgentBuilder",
    "LLMProvider",
    "LocalProvider",
    "OpenAICompatibleProvider",
    "OpenedSession",
    "ProviderDefaults",
    "ProviderEvent",
    "ScriptedProvider",
    "SessionBackend",
    "SessionInfo",
    "SettingsBackend",
    "Settle",
    "StepFinished",
    "StreamLimits",
    "StreamStarted",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallAccumulator",
    "ToolCallArgumentsDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolResult",
    "ToolResultEvent",
    "ToolSpec",
    "ToolStep",
    "Turn",
    "TurnOverrides",
    "TurnResult",
    "Usage",
    "UsageReport",
    "capture_content",
    "check_tool_sequence",
    "current_trace_id",
    "default_provider",
    "find_default_model",
    "provider_label",
    "select_window",
    "settings_changes",
    "settle_settings",
    "settle_tool_messages",
    "tool",
    "traced",
    "tracing_enabled",
    "trim_history",
]

_LAZY = {
    "OpenAICompatibleProvider": "._openai",
    "LocalProvider": "._local",
    "LOCAL_MAX_TOKENS": "._local",
    "find_default_model": "._local",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
