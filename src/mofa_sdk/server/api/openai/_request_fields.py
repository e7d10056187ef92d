"""What a Responses request sets beside its input: the fields kept with the response (echoed in its object)
and the fields forwarded to the provider (Chat Completions names: ``top_p``, the penalties and the output
format as ``response_format``)."""

from __future__ import annotations

from typing import Any

from ....entities import Agent
from .schemas import ResponseCreate

__all__ = ["provider_fields", "request_fields"]

_FORWARDED = ("top_p", "presence_penalty", "frequency_penalty")
_KEPT = ("top_p", "presence_penalty", "frequency_penalty", "top_logprobs", "max_tool_calls", "prompt_cache_key",
         "safety_identifier", "user", "reasoning")


def request_fields(body: ResponseCreate, agent: Agent | None) -> dict[str, Any]:
    """The request's own fields, kept with its user message (``request_params``) for the response object; an
    agent row's temperature is the one in effect when the request set none."""
    kept: dict[str, Any] = {name: getattr(body, name) for name in _KEPT if getattr(body, name) is not None}
    kept["store"] = body.store is not False
    if body.text is not None and body.text.echoed() is not None:
        kept["text_format"] = body.text.echoed()
    if agent is not None and agent.temperature is not None:
        kept["agent_temperature"] = agent.temperature
    return kept


def provider_fields(body: ResponseCreate) -> dict[str, Any]:
    """The request fields sent to the provider, in Chat Completions' names."""
    out: dict[str, Any] = {name: getattr(body, name) for name in _FORWARDED if getattr(body, name) is not None}
    fmt = body.text.response_format() if body.text is not None else None
    if fmt is not None:
        out["response_format"] = fmt
    return out
