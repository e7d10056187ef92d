"""One token estimate for the package, so that the window's budget, a provider's missing usage and the stream's
fallback all count alike. Providers with a tokenizer (the local model) pass their own ``count``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ._types import ChatMessage, Usage

__all__ = ["MESSAGE_OVERHEAD", "env_max_tokens", "estimate_tokens", "estimate_usage", "message_tokens"]

#: tokens a chat template adds around each message (role, separators)
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """About four UTF-8 bytes per token: cheap, deterministic, never 0 for non-empty text."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


def message_tokens(message: ChatMessage, count: Callable[[str], int] = estimate_tokens) -> int:
    """What one message costs in a request: its text, and the tool calls it makes (name and arguments, as
    the template writes them out) or the call id a tool result names. Image parts are not counted."""
    tokens = count(message.content)
    for call in message.tool_calls:
        tokens += count(call.name) + count(call.arguments) + MESSAGE_OVERHEAD
    if message.tool_call_id is not None:
        tokens += count(message.tool_call_id)
    return tokens


def estimate_usage(
    messages: Sequence[ChatMessage], text: str, count: Callable[[str], int] = estimate_tokens
) -> Usage:
    """Usage for a request and its reply when the provider reported none, marked as estimated."""
    prompt = sum(message_tokens(m, count) + MESSAGE_OVERHEAD for m in messages)
    completion = count(text)
    return Usage(prompt, completion, prompt + completion, estimated=True)


def env_max_tokens() -> int | None:
    """``MOFA_MAX_TOKENS``, the cap on each reply's tokens the environment sets (None when unset)."""
    raw = (os.environ.get("MOFA_MAX_TOKENS") or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"MOFA_MAX_TOKENS must be a positive integer, got {raw!r}")
    return int(raw)
