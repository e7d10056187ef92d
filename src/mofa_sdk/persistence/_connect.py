"""``connect_store(url)``: one entry point that picks the store from the URL's scheme."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._store import Store

__all__ = ["ACCEPTED_SCHEMES", "connect_store", "default_database_url"]

ACCEPTED_SCHEMES = "postgresql:// (or postgres://), sqlite:///path/to/file.db, memory://"


def default_database_url() -> str:
    """``sqlite:///`` + ``mofa.db`` in the user's data folder (e.g. ~/.local/share/mofa/mofa.db)."""
    import platformdirs

    return "sqlite:///" + str(Path(platformdirs.user_data_dir("mofa")) / "mofa.db")


def _scheme(url: str) -> str:
    # only the part before "://": the rest may hold a password and is never echoed
    head, sep, _ = url.partition("://")
    return head if sep and head.replace("+", "").replace("-", "").replace(".", "").isalnum() else ""


async def connect_store(url: str | None = None, **options: Any) -> Store:
    """The store for ``url``; None means ``DATABASE_URL``, else an SQLite file in the user's data folder.

    ``options`` go to the store's ``connect`` (e.g. ``migrate=False``, ``streaming_lease_seconds=2``).
    """
    if url is None:
        url = os.environ.get("DATABASE_URL") or default_database_url()
    if not isinstance(url, str):
        raise ConfigError(f"a database URL must be a str, got {type(url).__name__}")
    scheme = _scheme(url.strip()).lower()
    url = url.strip()
    if scheme in ("postgres", "postgresql"):
        from ._postgres import PostgresStore  # lazily: psycopg is only loaded when PostgreSQL is used

        return await PostgresStore.connect_with_options(url, **options)
    if scheme == "sqlite":
        from ._sqlite import SqliteStore

        return await SqliteStore.connect(url, **options)
    if scheme == "memory":
        from ._memory import InMemoryStore

        if url.lower() != "memory://":
            raise ConfigError("a memory store URL is exactly memory:// (nothing after the scheme)")
        options.pop("migrate", None)  # nothing to migrate
        return InMemoryStore(**options)
    named = f"scheme {scheme!r}" if scheme else "a URL with no scheme"
    raise ConfigError(f"unsupported database URL: {named}; accepted: {ACCEPTED_SCHEMES}")
