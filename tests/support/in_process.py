"""The service in the test's own process: ``create_app`` over a store and a provider, its lifespan entered,
and an ``httpx2`` client whose transport calls the app (no socket, no subprocess).

The transport hands a response over once it is complete: an in-process client reads whole streams, so tests
that disconnect mid-stream, kill a process or need two of them keep to the served processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2

from mofa_sdk.llm import LLMProvider
from mofa_sdk.persistence import Store
from mofa_sdk.server import ServeConfig, create_app
from mofa_sdk.server.http import ServeApp

__all__ = ["BASE_URL", "InProcess", "auth", "in_process"]

def auth(key: str) -> dict[str, str]:
    """The headers of a request made with service key ``key``."""
    return {"Authorization": f"Bearer {key}"}


#: the origin in-process requests are addressed to (nothing listens on it)
BASE_URL = "http://mofa.test"


@dataclass
class InProcess:
    """The app, its client, and what it serves: ``db`` (a URL that :func:`make_key` and row checks open
    again) and ``url`` (the base of every request)."""

    client: httpx2.AsyncClient
    #: the app (``app.services`` while it runs: a test may look at its run registry)
    app: ServeApp
    #: the transport into the app (for more clients, such as the ``openai`` SDK's)
    transport: httpx2.ASGITransport
    store: Store
    db: str
    url: str = BASE_URL


@asynccontextmanager
async def in_process(
    store: Store, provider: LLMProvider, db: str, config: ServeConfig | None = None
) -> AsyncIterator[InProcess]:
    """Serve ``store`` with ``provider`` in this process until the block ends (the lifespan's start-up and
    shutdown run as uvicorn would run them)."""
    app = create_app(config or ServeConfig(max_reply_chars=None), store=store, provider=provider)
    assert isinstance(app, ServeApp)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30) as client:
            yield InProcess(client, app, transport, store, db)
