"""``create_app``: the FastAPI application of ``mofa serve``, and its lifespan (store, bus, runs)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..llm import LLMProvider
from ..persistence import Store, connect_store
from ._agents import AgentChooser
from ._auth import AuthMiddleware
from ._chat_shapes import OpenAIErrorMiddleware
from ._config import ServeConfig
from ._errors import install_error_handlers
from ._limits import BodyLimitMiddleware
from ._notify import LocalBus, PgBus
from ._routes_chat import router as chat_router
from ._routes_conversations import router as conversations_router
from ._routes_meta import router as meta_router
from ._routes_responses import router as responses_router
from ._routes_runs import router as runs_router
from ._routes_sessions import router as sessions_router
from ._runs import RunRegistry

__all__ = ["CONFIG_ENV", "app_from_env", "create_app"]

log = logging.getLogger("mofa_sdk.server")

#: how ``mofa serve`` hands its settings to uvicorn's worker processes
CONFIG_ENV = "MOFA_SERVE_CONFIG"


def create_app(
    config: ServeConfig | None = None,
    *,
    store: Store | None = None,
    provider: LLMProvider | None = None,
) -> FastAPI:
    """The ASGI app. Mount it in your own, or run it with uvicorn (what ``mofa serve`` does).

    ``store``: an open store to use (else one is connected to ``config.database_url`` at start-up, migrated,
    and closed at shutdown). ``provider``: the provider of turns that name no agent row (else the one
    ``mofa chat`` would pick: ``OPENAI_*``, else the local model). Runs of other processes are followed
    through PostgreSQL LISTEN/NOTIFY when the database is PostgreSQL and its URL is known.
    """
    cfg = config or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = cfg.database_url or os.environ.get("DATABASE_URL") or None
        own = store is None
        options: dict[str, Any] = {"streaming_lease_seconds": cfg.streaming_lease_seconds}
        if url is not None and url.partition("://")[0].lower() in ("postgres", "postgresql"):
            options["max_connections"] = cfg.pool_size
        if cfg.row_level_security:
            options["row_level_security"] = True
        the_store = store if store is not None else await connect_store(url, **options)
        bus: LocalBus
        if the_store.dialect == "postgres" and url is not None:
            bus = PgBus(url)
        else:
            if the_store.dialect == "postgres":
                log.warning("no database URL given with the store: runs are followed in this process only")
            bus = LocalBus()
        registry = RunRegistry(the_store, bus, AgentChooser(the_store, provider), cfg)
        app.state.store = the_store
        app.state.registry = registry
        try:
            await bus.start()
            registry.start()
            yield
        finally:
            try:
                await registry.close()
                await bus.close()
            finally:
                if own:
                    await the_store.close()

    app = FastAPI(
        title="mofa serve",
        version=__version__,
        summary="Streaming LLM conversations over HTTP: runs that outlive the connection, resumable SSE.",
        lifespan=lifespan,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(runs_router)
    app.include_router(sessions_router)
    app.include_router(meta_router)
    app.include_router(chat_router)
    app.include_router(conversations_router)
    app.include_router(responses_router)
    # outermost first: a request is authenticated before its body is read
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(AuthMiddleware, store=lambda: app.state.store)
    app.add_middleware(OpenAIErrorMiddleware)  # outside the others: their errors too take OpenAI's shape
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn's workers call (``mofa serve``): the settings come in :data:`CONFIG_ENV`."""
    raw = os.environ.get(CONFIG_ENV)
    return create_app(ServeConfig(**json.loads(raw)) if raw else ServeConfig())


def config_to_env(config: ServeConfig) -> str:
    return json.dumps(asdict(config))
