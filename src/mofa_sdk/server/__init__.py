"""``mofa serve``: the library over HTTP. Runs are owned by the service, not by requests; their events
are numbered, replayed from the database and followed live (in-process, or across processes through
PostgreSQL LISTEN/NOTIFY). Needs the ``serve`` extra (FastAPI and uvicorn).

The layers, one-way: ``runs`` (the run engine: runs, registry, typed event log, following, bus; no web
framework) ← ``http`` (auth, body limit, SSE, typed dependencies, the one error mapping) ← ``api.native`` and
``api.openai`` (routes and pydantic schemas per API) ← ``create_app`` (the app and its lifespan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import ServeConfig
from ._logs import JsonFormatter, log_config
from ._settings import CONFIG_FILE_ENV, KEYS, Key, ServeSettings, default_config_path, load_settings

if TYPE_CHECKING:
    from ._app import CONFIG_ENV, app_from_env, config_to_env, create_app
    from .http import GuardedH11Protocol

__all__ = [
    "CONFIG_ENV", "CONFIG_FILE_ENV", "KEYS", "GuardedH11Protocol", "JsonFormatter", "Key", "ServeConfig",
    "ServeSettings", "app_from_env", "config_to_env", "create_app", "default_config_path", "load_settings",
    "log_config",
]

_APP = {"CONFIG_ENV", "app_from_env", "config_to_env", "create_app"}


def __getattr__(name: str) -> Any:
    # the app (and FastAPI with it) loads on first use: importing the run engine alone needs no web framework
    if name in _APP:
        from . import _app

        return getattr(_app, name)
    if name == "GuardedH11Protocol":  # uvicorn's protocol, for ``mofa serve``
        from . import http

        return http.GuardedH11Protocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
