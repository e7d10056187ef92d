"""The fields of a Response object the Open Responses specification requires beyond what a run holds: the
request's sampling parameters as the numbers in effect, the echoed options, and ``completed_at``.

What a request set is kept in its ``request_params`` (saved with its user message), under the names of
:data:`ECHOED`; a field the request left out reads as the value this service (or the provider's default)
used. Nothing here reads or writes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "ECHOED", "spec_fields", "text_field"]

#: the effective value of a sampling field a request left out: the OpenAI defaults the providers apply
DEFAULTS: dict[str, float | int] = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 0.0,
                                    "frequency_penalty": 0.0, "top_logprobs": 0}
#: request fields echoed in the Response object as they came (None when not sent)
ECHOED = ("max_tool_calls", "safety_identifier", "prompt_cache_key", "user")


def _number(meta: dict[str, Any], name: str) -> float | int:
    value = meta.get(name)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else DEFAULTS[name]


def text_field(fmt: dict[str, Any] | None) -> dict[str, Any]:
    """The ``text`` of a Response: its output format as the specification echoes it (a JSON schema by its
    name and strictness; the schema itself is not repeated)."""
    if not fmt or fmt.get("type") == "text":
        return {"format": {"type": "text"}}
    if fmt.get("type") == "json_object":
        return {"format": {"type": "json_object"}}
    return {"format": {"type": "json_schema", "name": fmt.get("name", ""), "description": fmt.get("description"),
                       "schema": None, "strict": bool(fmt.get("strict", False))}}


def spec_fields(meta: dict[str, Any], status: str, completed_at: int | None) -> dict[str, Any]:
    """The required fields a Response object takes from its request (``meta``) and its end: ``status`` is the
    Response status, ``completed_at`` the time the reply was finished (reported only when completed)."""
    reasoning = meta.get("reasoning")
    out: dict[str, Any] = {name: _number(meta, name) for name in DEFAULTS}
    if not isinstance(meta.get("temperature"), int | float) and isinstance(meta.get("agent_temperature"), float):
        out["temperature"] = meta["agent_temperature"]  # the agent row's, when the request set none
    out.update({name: meta.get(name) for name in ECHOED})
    out.update({
        "completed_at": completed_at if status == "completed" else None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
        if isinstance(reasoning, dict) else {"effort": None, "summary": None},
        "service_tier": "default",
        "store": meta.get("store", True) is not False,
        "text": text_field(meta.get("text_format")),
    })
    return out
