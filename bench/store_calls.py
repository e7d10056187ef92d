"""The store calls of one ``POST /v1/responses`` chain turn, traced in process.

One SQLite file, the scripted provider, the app in this process (httpx over ASGI). A first response starts a
conversation; the traced request continues it with ``previous_response_id`` and ``stream: true``, and is read
to its end. Every public store method is wrapped on the store instance, so each call is counted with the module
that made it (a store method that calls another counts once), and the moment the route hands the turn to the
run registry (``start_run``) is marked: what comes after it is the engine's. Run: ``python
bench/store_calls.py`` (``--json`` for a machine-readable trace: ``{"calls": [{"method", "caller"}],
"run_starts_after": n}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx

from mofa_sdk.llm import ScriptedProvider
from mofa_sdk.persistence import SqliteStore, Store
from mofa_sdk.persistence._api_keys import issue_api_key
from mofa_sdk.server import create_app
from mofa_sdk.server.http import ServeApp

#: store methods that are plumbing, not reads or writes
_SKIP = {"close", "transaction", "dialect", "migrate", "migration_status", "check_schema", "schema_error",
         # one statement per process per heartbeat for all its runs, not a call of any turn (issue 24)
         "renew_session_leases", "sweep_expired_leases"}


class Trace:
    """Counts store calls while ``on`` is set, each with the first mofa_sdk module outside the store."""

    def __init__(self) -> None:
        self.on = False
        self.calls: list[tuple[str, str]] = []
        #: how many calls were made before the run registry was handed the turn (None: it never was)
        self.run_starts_after: int | None = None
        self._depth = 0

    def wrap(self, store: Store) -> None:
        for name in dir(store):
            if name.startswith("_") or name in _SKIP:
                continue
            method = getattr(store, name)
            if inspect.iscoroutinefunction(method):
                setattr(store, name, self._counted(name, method))

    def _counted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if self.on and not self._depth:
                self.calls.append((name, _caller()))
            self._depth += 1  # the store's own calls inside this one are part of it
            try:
                return await method(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def mark_run_start(self, app: ServeApp) -> None:
        registry = app.services.registry if app.services is not None else None
        assert registry is not None, "the app's lifespan has not started"
        start_run = registry.start_run

        async def marked(*args: Any, **kwargs: Any) -> Any:
            if self.on and self.run_starts_after is None:
                self.run_starts_after = len(self.calls)
            return await start_run(*args, **kwargs)

        registry.start_run = marked  # type: ignore[method-assign]


def _caller() -> str:
    for frame in inspect.stack()[2:]:
        module = frame.frame.f_globals.get("__name__", "")
        if module.startswith("mofa_sdk.") and not module.startswith("mofa_sdk.persistence._s"):
            return f"{module}:{frame.function}"
    return "?"


@contextlib.asynccontextmanager
async def _client(store: Store, provider: ScriptedProvider, trace: Trace) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store=store, provider=provider)
    assert isinstance(app, ServeApp)
    async with app.router.lifespan_context(app):
        trace.mark_run_start(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mofa.test") as client:
            yield client


async def trace_chain_turn() -> Trace:
    with tempfile.TemporaryDirectory() as folder:
        store = await SqliteStore.connect(f"sqlite:///{Path(folder) / 'trace.db'}")
        try:
            _, key = await issue_api_key(store, uuid.uuid4(), uuid.uuid4(), "trace")
            trace = Trace()
            trace.wrap(store)
            provider = ScriptedProvider(["one two three", "four five six"], delta_delay=0.0)
            async with _client(store, provider, trace) as client:
                headers = {"Authorization": f"Bearer {key}"}
                first = await client.post("/v1/responses", headers=headers,
                                          json={"model": "scripted-model", "input": "Hello"})
                first.raise_for_status()
                trace.on = True
                async with client.stream(
                    "POST", "/v1/responses", headers=headers,
                    json={"model": "scripted-model", "input": "And then?", "stream": True,
                          "previous_response_id": first.json()["id"]},
                ) as response:
                    response.raise_for_status()
                    async for _ in response.aiter_bytes():
                        pass
                await asyncio.sleep(0.2)  # the run's finishing writes
                trace.on = False
            return trace
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trace = asyncio.run(trace_chain_turn())
    if args.json:
        json.dump({"calls": [{"method": m, "caller": c} for m, c in trace.calls],
                   "run_starts_after": trace.run_starts_after}, sys.stdout, indent=1)
        print()
        return
    for i, (method, caller) in enumerate(trace.calls, 1):
        if i - 1 == trace.run_starts_after:
            print("     -- the route hands the turn to the run registry (start_run) --")
        print(f"{i:3}  {method:42} {caller}")
    print(f"{len(trace.calls)} store calls")


if __name__ == "__main__":
    main()
