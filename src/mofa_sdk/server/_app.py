"""``create_app``: the FastAPI application of ``mofa serve``, and its lifespan (store, bus, runs)."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..errors import ConfigError, ServiceUnavailableError
from ..llm import LLMProvider, capture_content
from ..persistence import Store, connect_store
from ._config import ServeConfig
from ._signals import forwarding_termination
from .api.native import router as native_router
from .api.openai import router as openai_router
from .http import (
    AuthMiddleware,
    BodyLimitMiddleware,
    ServeApp,
    Services,
    TracingMiddleware,
    install_access_log_filter,
    install_error_handlers,
    start_otel_sdk,
)
from .runs import LocalBus, PgBus, RunRegistry
from .web import router as web_router

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
    if cfg.otel:
        start_otel_sdk()
    if cfg.otel_capture_content:
        capture_content(True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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
        registry = RunRegistry(the_store, bus, provider, cfg)
        if metrics is not None:
            registry.handlers = (metrics.handler,)
        app.services = Services(the_store, registry)
        install_access_log_filter()  # after uvicorn configured its loggers
        try:
            await bus.start()
            registry.start()
            with forwarding_termination(registry.begin_shutdown):
                yield
        finally:
            app.services = None
            try:
                await registry.close()
                await bus.close()
            finally:
                if own:
                    await the_store.close()

    app = ServeApp(
        **_telemetry_options(),
        title="mofa serve",
        version=__version__,
        summary="Streaming LLM conversations over HTTP: runs that outlive the connection, resumable SSE.",
        lifespan=lifespan,
        redoc_url=None,
    )
    install_error_handlers(app)
    metrics = None
    if cfg.metrics:
        try:
            from .http import ServiceMetrics
        except ImportError as exc:
            raise ConfigError(
                f"--metrics needs the metrics extra: pip install 'mofa-sdk[metrics]' ({exc.name} is missing)"
            ) from None
        metrics = ServiceMetrics(lambda: app.services)
    app.include_router(native_router)
    app.include_router(openai_router)
    app.include_router(web_router)

    def current_store() -> Store:
        if app.services is None:
            raise ServiceUnavailableError("the service is not started (its lifespan has not run)")
        return app.services.store

    # the last added runs first: a request is authenticated before its body is read
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes, timeout=cfg.body_timeout_seconds)
    app.add_middleware(AuthMiddleware, store=current_store)
    if not _NATIVE_TELEMETRY:
        # outside authentication: a request's span covers its 401 too
        app.add_middleware(TracingMiddleware)
    if metrics is not None:
        from .http import MetricsMiddleware

        app.add_middleware(MetricsMiddleware, metrics=metrics, token=cfg.metrics_token)
    return app


#: FastAPI makes the HTTP request spans itself (continuing ``traceparent``) from version 0.165 on; before,
#: ``TracingMiddleware`` makes them
_NATIVE_TELEMETRY = "telemetry" in inspect.signature(FastAPI.__init__).parameters


def _telemetry_options() -> dict[str, Any]:
    # the request's span and the turn under it; not a span per dependency and serialization as well
    return {"telemetry": {"operation_spans": False}} if _NATIVE_TELEMETRY else {}


def app_from_env() -> FastAPI:
    """The factory uvicorn's workers call (``mofa serve``): the settings come in :data:`CONFIG_ENV`."""
    raw = os.environ.get(CONFIG_ENV)
    config = ServeConfig(**json.loads(raw)) if raw else ServeConfig()
    from .http import GuardedH11Protocol  # uvicorn's: only where uvicorn runs the app

    GuardedH11Protocol.configure(config)  # this worker's connection limits
    return create_app(config)


def config_to_env(config: ServeConfig) -> str:
    return json.dumps(asdict(config))
