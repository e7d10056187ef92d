"""The words every layer shares: message roles and statuses, api-call statuses, provider types.

A leaf module (it imports nothing of mofa_sdk), so that the llm layer and the stored rows use the same
literals without the llm layer depending on persistence.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "LOCAL_PROVIDER_TYPE",
    "OPENAI_PROVIDER_TYPES",
    "PROVIDER_TYPES",
    "ApiCallStatus",
    "MessageRole",
    "MessageStatus",
    "is_local_provider",
    "is_openai_provider",
]

MessageRole = Literal["system", "user", "assistant", "tool"]
#: how a reply ended: complete, the consumer stopped (cancelled), or the provider failed (error);
#: "streaming" while it is checkpointed, "interrupted" only on rows read back after a crash
MessageStatus = Literal["complete", "streaming", "cancelled", "error", "interrupted"]
ApiCallStatus = Literal["success", "failed", "timeout", "rate_limited", "cancelled"]

#: provider types served by the OpenAI-compatible client at the row's ``api_base``
OPENAI_PROVIDER_TYPES = ("openai", "compatible", "azure", "ollama")
#: the in-process GGUF model: its ``api_base`` is a file path, not a URL (never redacted, never fetched)
LOCAL_PROVIDER_TYPE = "local"
#: every type a provider row may have
PROVIDER_TYPES = (*OPENAI_PROVIDER_TYPES, LOCAL_PROVIDER_TYPE)


def is_openai_provider(provider_type: str) -> bool:
    return provider_type in OPENAI_PROVIDER_TYPES


def is_local_provider(provider_type: str) -> bool:
    return provider_type == LOCAL_PROVIDER_TYPE
