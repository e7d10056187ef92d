"""One-line agents with automatic persistence. Each returns an ``LLMAgentBuilder`` with the persistence
plugin attached; the store is connected (and migrated) by ``build_async()``.

They read ``DATABASE_URL``, ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` and ``USER_ID``,
``TENANT_ID``, ``AGENT_ID``, ``SESSION_ID`` (UUIDs, validated: a bad one is a ConfigError, never replaced).

``system_prompt=None`` sets none: a resumed session keeps the one it recorded (as ``mofa chat -s`` does),
a new one has none. A resumed session also keeps its window, reply cap and (on the same provider) model.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..llm import LLMAgentBuilder
from ._connect import connect_store, default_database_url
from ._memory import InMemoryStore
from ._plugin import PersistencePlugin
from ._store import Store

__all__ = ["quick_agent", "quick_agent_with_memory", "quick_agent_with_postgres", "quick_agent_with_sqlite"]


def _builder(system_prompt: str | None, url: str | None, store: Store | None = None) -> LLMAgentBuilder:
    env = os.environ
    plugin = PersistencePlugin(
        "persistence-plugin",
        store,
        env.get("USER_ID") or None,
        env.get("TENANT_ID") or None,
        env.get("AGENT_ID") or None,
        env.get("SESSION_ID") or None,
        store_factory=(lambda: connect_store(url)) if store is None else None,
        owns_store=True,
    )
    builder = LLMAgentBuilder.from_env()
    if system_prompt is not None:
        builder.with_system_prompt(system_prompt)
    return builder.with_persistence_plugin(plugin)


def quick_agent_with_postgres(system_prompt: str | None = None, *, database_url: str | None = None) -> LLMAgentBuilder:
    """PostgreSQL at ``database_url`` or ``DATABASE_URL``."""
    url = database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("quick_agent_with_postgres needs database_url= or DATABASE_URL (postgresql://…)")
    if not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError("quick_agent_with_postgres needs a postgresql:// URL; use quick_agent() for others")
    return _builder(system_prompt, url)


def quick_agent_with_sqlite(
    system_prompt: str | None = None, path: str | os.PathLike[str] | None = None
) -> LLMAgentBuilder:
    """An SQLite file at ``path`` (default: ``mofa.db`` in the user data folder)."""
    url = f"sqlite:///{Path(path).expanduser().resolve()}" if path is not None else default_database_url()
    return _builder(system_prompt, url)


def quick_agent_with_memory(system_prompt: str | None = None) -> LLMAgentBuilder:
    """In-memory persistence: the same semantics, gone when the process ends."""
    return _builder(system_prompt, None, InMemoryStore())


def quick_agent(system_prompt: str | None = None) -> LLMAgentBuilder:
    """The backend from ``DATABASE_URL``; an SQLite file in the user data folder when it is unset."""
    return _builder(system_prompt, os.environ.get("DATABASE_URL") or default_database_url())
