"""``mofa serve``: the HTTP service (FastAPI on uvicorn). Needs the ``serve`` extra."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .._redact import redact_url
from ..persistence import default_database_url
from ._common import DbOpt, err_console, fail, open_store, run
from ._open import open_when_up

__all__ = ["serve"]


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Worker processes (PostgreSQL only when > 1).")
    ] = 1,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the web chat page in a browser once the service answers.")
    ] = False,
    row_level_security: Annotated[
        bool, typer.Option("--row-level-security", help="Set the tenant in the database session too (PostgreSQL).")
    ] = False,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1024, help="Refuse request bodies larger than this.")
    ] = 1_000_000,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Open connections per worker; one more gets a 503.")
    ] = 1000,
    thread_history: Annotated[
        bool, typer.Option(
            "--thread-history/--no-thread-history",
            help="Continue the stored session whose messages a stateless request resends (Chat Completions, "
                 "Responses input lists), saving only what is new; off: each request is saved on its own.",
        ),
    ] = True,
    db: DbOpt = None,
) -> None:
    """Serve the library over HTTP: streamed turns (SSE) that outlive the connection, resumable from any
    worker; every route needs an API key from `mofa keys create`."""
    try:
        import uvicorn

        from ..server import CONFIG_ENV, GuardedH11Protocol, ServeConfig, config_to_env
    except ImportError as exc:
        fail(f"`mofa serve` needs the serve extra: pip install 'mofa-sdk[serve]' ({exc.name} is missing)")
    url = (db or os.environ.get("DATABASE_URL") or default_database_url()).strip()
    scheme = url.partition("://")[0].lower()
    if workers > 1 and scheme not in ("postgres", "postgresql"):
        fail(
            f"--workers {workers} needs PostgreSQL: with {scheme or 'this database'} every run lives in one "
            "process, so serve it with one worker (or point --db at PostgreSQL)"
        )
    if row_level_security and scheme not in ("postgres", "postgresql"):
        fail("--row-level-security is a PostgreSQL feature; the database given is not PostgreSQL")

    async def check() -> None:  # connect and migrate once, so a bad URL is one clear line, not a worker crash
        async with open_store(url):
            pass

    run(check())
    config = ServeConfig(database_url=url, row_level_security=row_level_security, max_body_bytes=max_body_bytes,
                         max_connections=max_connections, thread_history=thread_history)
    os.environ[CONFIG_ENV] = config_to_env(config)
    banner = f"mofa serve on http://{host}:{port} · database {redact_url(url)} · {workers} worker(s)"
    err_console.print(banner, soft_wrap=True)
    if open_page:
        open_when_up(host, port)
    # the guarded protocol adds what uvicorn lacks: a deadline for a request's headers, a connection cap
    # (each worker configures it from the settings, in app_from_env); idle kept-alive connections close at 5 s
    uvicorn.run(
        "mofa_sdk.server:app_from_env", factory=True, host=host, port=port, workers=workers,
        log_level="info", timeout_graceful_shutdown=int(config.shutdown_grace_seconds) + 5,
        http=GuardedH11Protocol, timeout_keep_alive=5,
    )
