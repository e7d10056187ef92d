"""How a session's recorded settings and what a caller asks for become what answers it: one pure rule for
the builder, ``mofa chat`` and ``mofa serve`` (through the turn engine), so a session resumes the same way
through each. No I/O here.

A ``SessionSettings`` records only the fields that were given (``model_fields_set``): an unrecorded
``window`` is "not chosen", a recorded ``None`` is "every round".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..entities import SessionSettings, SettingsChange
from ..ids import utc_now
from ._provider import LLMProvider

__all__ = ["provider_label", "recorded", "settings_changes", "settle_settings"]


def recorded(settings: SessionSettings | None) -> dict[str, Any]:
    """The fields ``settings`` records, by name (none for None)."""
    return {} if settings is None else settings.model_dump(exclude_unset=True)


def provider_label(provider: LLMProvider) -> str:
    """Which provider answers, as a session records it (a recorded model is only restored on the same
    provider): ``local <gguf file>`` or ``<name> <base URL>``, never with credentials."""
    from ._local import LocalProvider  # no llama_cpp import: that waits for the first generation

    if isinstance(provider, LocalProvider):
        return f"local {provider.model_path.name}"
    base = getattr(provider, "base_url", None)  # OpenAICompatibleProvider's is redacted already
    return f"{provider.name} {base}" if isinstance(base, str) else str(provider.name)


def settle_settings(
    stored: SessionSettings | None,
    given: SessionSettings,
    defaults: SessionSettings,
    *,
    label: str,
    serves: Callable[[str], bool],
) -> SessionSettings:
    """What a session runs with now.

    Each field: what ``given`` sets (the caller asked for it); else what the session recorded; else
    ``defaults`` (the agent row's, the builder's). The provider is always ``label``; a recorded model is
    restored only when it came from that provider and it ``serves`` it. The agent is recorded when given
    or recorded before; the reply cap only when given or recorded before (a provider's own default, such
    as the local model's, is not the session's)."""
    old, new, base = recorded(stored), recorded(given), recorded(defaults)
    out: dict[str, Any] = {"provider": label}
    if "agent" in new or "agent" in old:
        out["agent"] = new.get("agent", old.get("agent"))
    if "model" in new:
        out["model"] = new["model"]
    elif old.get("model") and old.get("provider") == label and serves(old["model"]):
        out["model"] = old["model"]
    else:
        out["model"] = base.get("model")
    for key in ("system_prompt", "window"):
        out[key] = new[key] if key in new else old[key] if key in old else base.get(key)
    if "max_tokens" in new or "max_tokens" in old:
        out["max_tokens"] = new.get("max_tokens", old.get("max_tokens"))
    return SessionSettings(**out)


def settings_changes(stored: SessionSettings | None, settled: SessionSettings) -> list[SettingsChange]:
    """One change for each recorded setting that ``settled`` gives another value (a setting recorded for
    the first time is not a change)."""
    old, new = recorded(stored), recorded(settled)
    at = utc_now()
    return [SettingsChange(at=at, key=k, old=old[k], new=v) for k, v in new.items() if k in old and old[k] != v]
