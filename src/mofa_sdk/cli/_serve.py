"""``mofa serve``: the HTTP service (FastAPI on uvicorn). Needs the ``serve`` extra.

Every setting comes from a flag, else the environment, else the config file (``--config``, ``MOFA_CONFIG``
or ``mofa.toml`` in the user config folder), else its default (``mofa config show`` prints the result).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from .._redact import redact_url
from ..errors import ConfigError
from ..persistence import default_database_url
from ._common import DbOpt, err_console, fail, open_store, run, user_errors
from ._open import open_when_up

__all__ = ["ConfigOpt", "serve"]

ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", metavar="PATH", show_default=False,
                 help="TOML config file. Default: MOFA_CONFIG, else mofa.toml in the user config folder if it exists."),
]


def serve(
    config_file: ConfigOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on. [default: 127.0.0.1]",
                                             show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on. [default: 8000]",
                                             show_default=False)] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, show_default=False,
                                 help="Worker processes (PostgreSQL only when > 1). [default: 1]")
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the web chat page in a browser once the service answers.")
    ] = False,
    row_level_security: Annotated[
        bool | None, typer.Option("--row-level-security/--no-row-level-security", show_default=False,
                                  help="Set the tenant in the database session too (PostgreSQL).")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option("--max-body-bytes", min=1024, show_default=False,
                                 help="Refuse request bodies larger than this. [default: 1000000]")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option("--max-connections", min=1, show_default=False,
                                 help="Open connections per worker; one more gets a 503. [default: 1000]")
    ] = None,
    thread_history: Annotated[
        bool | None, typer.Option(
            "--thread-history/--no-thread-history", show_default=False,
            help="Continue the stored session whose messages a stateless request resends (Chat Completions, "
                 "Responses input lists), saving only what is new; off: each request is saved on its own. "
                 "[default: on]",
        ),
    ] = None,
    pool_size: Annotated[
        int | None, typer.Option("--pool-size", min=1, max=1000, show_default=False,
                                 help="PostgreSQL connections per worker process. [default: 20]")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", metavar="LEVEL", show_default=False,
                                 help="critical, error, warning, info or debug. [default: info]")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option("--log-format", metavar="FORMAT", show_default=False,
                                 help="text, or json (one JSON object a line). [default: text]")
    ] = None,
    otel: Annotated[
        bool | None, typer.Option("--otel/--no-otel", show_default=False,
                                  help="Export OpenTelemetry traces over OTLP (OTEL_* variables; the otel extra).")
    ] = None,
    metrics: Annotated[
        bool | None, typer.Option("--metrics/--no-metrics", show_default=False,
                                  help="Serve GET /metrics, Prometheus text format (the metrics extra).")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Serve the library over HTTP: streamed turns (SSE) that outlive the connection, resumable from any
    worker; every route needs an API key from `mofa keys create`."""
    try:
        import uvicorn

        from ..server import CONFIG_ENV, GuardedH11Protocol, config_to_env, load_settings, log_config
    except ImportError as exc:
        fail(f"`mofa serve` needs the serve extra: pip install 'mofa-sdk[serve]' ({exc.name} is missing)")
    flags: dict[str, Any] = {
        "database.url": db, "server.host": host, "server.port": port, "server.workers": workers,
        "database.row_level_security": row_level_security, "server.max_body_bytes": max_body_bytes,
        "database.pool_size": pool_size, "log.level": log_level, "log.format": log_format,
        "otel.enabled": otel, "metrics.enabled": metrics, "server.max_connections": max_connections,
        "server.thread_history": thread_history,
    }
    with user_errors():
        settings = load_settings(flags, path=config_file)
    config = settings.config
    url = (config.database_url or default_database_url()).strip()
    scheme = url.partition("://")[0].lower()
    if settings.workers > 1 and scheme not in ("postgres", "postgresql"):
        fail(
            f"--workers {settings.workers} needs PostgreSQL: with {scheme or 'this database'} every run lives in "
            "one process, so serve it with one worker (or point --db at PostgreSQL)"
        )
    if config.row_level_security and scheme not in ("postgres", "postgresql"):
        fail("--row-level-security is a PostgreSQL feature; the database given is not PostgreSQL")
    if config.otel:
        with user_errors():
            _check_otel_extra()
    if config.metrics:
        with user_errors():
            _check_metrics_extra()

    async def check() -> None:  # connect and migrate once, so a bad URL is one clear line, not a worker crash
        async with open_store(url):
            pass

    run(check())
    from dataclasses import replace

    config = replace(config, database_url=url)
    os.environ[CONFIG_ENV] = config_to_env(config)
    source = f" · config {settings.path}" if settings.path is not None else ""
    extras = "".join(f" · {name}" for name, on in (("otel", config.otel), ("/metrics", config.metrics)) if on)
    banner = (f"mofa serve on http://{settings.host}:{settings.port} · database {redact_url(url)} · "
              f"{settings.workers} worker(s){extras}{source}")
    err_console.print(banner, soft_wrap=True)
    if open_page:
        open_when_up(settings.host, settings.port)
    uvicorn.run(
        "mofa_sdk.server:app_from_env", factory=True, host=settings.host, port=settings.port,
        workers=settings.workers, log_level=settings.log_level,
        # the guarded protocol adds what uvicorn lacks: a deadline for a request's headers, a connection cap
        # (each worker configures it from the settings, in app_from_env), the JSON error shape for a request
        # it cannot parse; idle kept-alive connections close at 5 s
        http=GuardedH11Protocol, timeout_keep_alive=5,
        log_config=log_config(settings.log_level, settings.log_format),
        timeout_graceful_shutdown=int(config.shutdown_grace_seconds) + 5,
    )


def _check_otel_extra() -> None:
    try:
        import opentelemetry.exporter.otlp
        import opentelemetry.sdk  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--otel needs the otel extra: pip install 'mofa-sdk[otel]' ({exc.name} is missing)"
        ) from None


def _check_metrics_extra() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--metrics needs the metrics extra: pip install 'mofa-sdk[metrics]' ({exc.name} is missing)"
        ) from None
