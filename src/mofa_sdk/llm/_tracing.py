"""OpenTelemetry spans of a turn, following the GenAI semantic conventions.

Only the OpenTelemetry *API* is imported: with no SDK configured (no tracer provider set) every function
here returns at once and a turn makes no span at all, so tracing costs one check per turn. With an SDK, a
turn is an ``invoke_agent`` span and each model call a ``chat {model}`` child (``gen_ai.*`` attributes);
the persistence writes of the turn run with the turn span current, so their spans are its children too.

Prompt and reply text stay off the spans unless asked for (``capture_content(True)`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``): they may hold personal data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ._provider import ChatParams, LLMProvider
from ._types import ChatMessage, Turn, TurnResult

__all__ = [
    "CONTENT_ENV",
    "TurnSpans",
    "capture_content",
    "current_trace_id",
    "start_turn_spans",
    "traced",
    "tracing_enabled",
]

#: the standard switch of GenAI instrumentations for recording message content
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_capture: bool | None = None

#: ``gen_ai.provider.name`` of each provider kind (the conventions' names where one exists)
_PROVIDER_NAMES = {"openai-compatible": "openai", "local": "llama_cpp", "scripted": "mofa.scripted"}


def tracing_enabled() -> bool:
    """True once a real tracer provider (an SDK) is set: the one check a turn pays without one."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _tracer() -> trace.Tracer:
    # looked up per turn, not once at import: a provider set (or replaced, as tests do) later is used
    return trace.get_tracer("mofa_sdk")


def capture_content(value: bool | None = None) -> bool:
    """Whether prompt and reply text go on the spans; ``value`` sets it for the process (None: read it)."""
    global _capture
    if value is not None:
        _capture = value
    if _capture is None:
        return os.environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return _capture


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the current span, or None when nothing is traced."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid and ctx.trace_flags.sampled else None


@contextmanager
def traced(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A child span of the current one around a block (a persistence write, say); None without an SDK."""
    if not tracing_enabled():
        yield None
        return
    with _tracer().start_as_current_span(name, kind=SpanKind.CLIENT, attributes=_clean(attributes)) as span:
        yield span


class TurnSpans:
    """The spans of one turn: the turn's own and the one of the model call in progress."""

    def __init__(self, provider: LLMProvider, turn: Turn, agent_name: str | None) -> None:
        self._provider = provider
        self._system = _PROVIDER_NAMES.get(provider.name, provider.name)
        self._content = capture_content()
        name = f"invoke_agent {agent_name}" if agent_name else "invoke_agent"
        self._tracer = _tracer()
        self.turn = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=_clean({
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": self._system,
            "gen_ai.agent.id": str(turn.agent_id),
            "gen_ai.agent.name": agent_name,
            "gen_ai.conversation.id": str(turn.session_id),
            "gen_ai.request.model": turn.model,
        }))
        self._turn_context = trace.set_span_in_context(self.turn)
        self.call: Span | None = None

    def active(self) -> AbstractContextManager[Any]:
        """The turn span as the current one, around a block that does not yield (hooks, writes)."""
        return trace.use_span(self.turn, end_on_exit=False)

    def start_call(self, params: ChatParams, request: Sequence[ChatMessage]) -> None:
        """A model call begins (a turn with tool calls makes several)."""
        self.end_call(None)
        local = self._provider.name == "local"
        self.call = self._tracer.start_span(
            f"chat {params.model}", context=self._turn_context,
            kind=SpanKind.INTERNAL if local else SpanKind.CLIENT,
            attributes=_clean({
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self._system,
                "gen_ai.request.model": params.model,
                "gen_ai.request.temperature": params.temperature,
                "gen_ai.request.max_tokens": params.max_tokens,
                "gen_ai.input.messages": _messages_json(request) if self._content else None,
            }),
        )

    def end_call(self, result: TurnResult | None) -> None:
        """The model call in progress ended with ``result`` (None: ended with no record)."""
        span, self.call = self.call, None
        if span is None:
            return
        if result is not None:
            _record(span, result, self._content)
        span.end()

    def end(self, result: TurnResult | None, error: BaseException | None = None) -> None:
        """The turn ended: the open model call ends with it."""
        self.end_call(result)
        if result is not None:
            self.turn.set_attribute("gen_ai.response.model", result.model)
            if result.usage is not None:
                self.turn.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
                self.turn.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
        failure = error if error is not None else result.error if result is not None else None
        if failure is not None and not isinstance(failure, GeneratorExit):
            _fail(self.turn, failure)
        elif result is not None and result.status == "cancelled":
            self.turn.set_attribute("mofa.turn.status", "cancelled")
        self.turn.end()


def start_turn_spans(
    provider: LLMProvider, turn: Turn, agent_name: str | None = None
) -> TurnSpans | None:
    """The spans of a starting turn, or None (and no cost) without a tracing SDK."""
    return TurnSpans(provider, turn, agent_name) if tracing_enabled() else None


def active(spans: TurnSpans | None) -> AbstractContextManager[Any]:
    return nullcontext() if spans is None else spans.active()


def _record(span: Span, result: TurnResult, content: bool) -> None:
    usage = result.usage
    attrs: dict[str, Any] = {
        "gen_ai.response.model": result.model,
        "gen_ai.response.id": result.response_id,
        "gen_ai.response.finish_reasons": [result.finish_reason] if result.finish_reason else None,
        "gen_ai.usage.input_tokens": usage.prompt_tokens if usage is not None else None,
        "gen_ai.usage.output_tokens": usage.completion_tokens if usage is not None else None,
        "mofa.usage.estimated": usage.estimated if usage is not None else None,
        "mofa.time_to_first_token_ms": result.time_to_first_token_ms,
        "mofa.call.status": result.status,
    }
    if content:
        message: dict[str, Any] = {"role": "assistant", "parts": [{"type": "text", "content": result.text}]}
        if result.finish_reason:
            message["finish_reason"] = result.finish_reason
        attrs["gen_ai.output.messages"] = json.dumps([message], ensure_ascii=False)
    span.set_attributes(_clean(attrs))
    if result.status == "error" and result.error is not None:
        _fail(span, result.error)


def _fail(span: Span, error: BaseException) -> None:
    # the error's type and code, never its text: a provider's message may quote the request
    code = getattr(error, "code", None)
    span.set_attribute("error.type", code if isinstance(code, str) and code else type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def _messages_json(messages: Sequence[ChatMessage]) -> str:
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "parts": [{"type": "text", "content": m.content}]}
        for call in m.tool_calls:
            item["parts"].append({"type": "tool_call", "id": call.id, "name": call.name,
                                  "arguments": call.arguments})
        out.append(item)
    return json.dumps(out, ensure_ascii=False)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry refuses None values: leave them out."""
    return {k: v for k, v in attributes.items() if v is not None}
