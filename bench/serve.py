"""6. The service (``mofa serve``): load, added latency per delta, resume latency.

Two served processes (``tests/server/_app.py``: the real app with a fast scripted provider) on one
PostgreSQL schema, driven by httpx2 over loopback:

- load: N concurrent streaming runs (each on its own session): errors, and every reply saved complete with
  exactly the text that was streamed;
- added latency per delta: each delta carries the time it was made; latency = when the consumer got it minus
  that. The service (HTTP client reading SSE) against the library in-process (the same turn through
  ``LLMAgent`` + ``PersistencePlugin`` on the same database, consumed directly);
- resume latency: a client reads 3 events, disconnects, reconnects with ``Last-Event-ID: 3``; time from
  sending the reconnect to receiving event 4, on the other process (LISTEN/NOTIFY path) and on the same one;
  beside it the floor, a plain authenticated ``GET /v1/runs/{id}`` on the same client.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _common import Mode, pg_schema, stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server._app import reply_of, stamps  # noqa: E402

from mofa_sdk.llm import LLMAgentBuilder  # noqa: E402
from mofa_sdk.persistence import PersistencePlugin, PostgresStore, issue_api_key  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.server._app", "--db", url, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient() as c:
        for _ in range(300):
            try:
                if (await c.get(f"{base}/healthz")).status_code == 200:
                    return proc, base
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise RuntimeError("the served app did not start")


async def _events(r: httpx2.Response, stop_after: int | None = None) -> list[tuple[int | None, str, str, float]]:
    """(id, event, data, time received) of each event."""
    out: list[tuple[int | None, str, str, float]] = []
    fields: dict[str, str] = {}
    async for line in r.aiter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if fields:
                out.append((int(fields["id"]) if "id" in fields else None, fields.get("event", ""),
                            fields.get("data", ""), time.time()))
                fields = {}
                if stop_after is not None and sum(1 for e in out if e[1] == "delta") >= stop_after:
                    break
            continue
        k, _, v = line.partition(":")
        fields[k] = v[1:] if v.startswith(" ") else v
    return out


async def _load(base: str, key: str, url: str, tenant: uuid.UUID, n: int) -> dict[str, Any]:
    import json

    h = {"Authorization": f"Bearer {key}"}
    limits = httpx2.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx2.AsyncClient(base_url=base, timeout=120, limits=limits) as c:
        sessions = [(await c.post("/v1/sessions", json={}, headers=h)).json()["id"] for _ in range(n)]
        errors: list[str] = []
        latencies: list[float] = []
        expected = reply_of(20)

        async def one(sid: str) -> None:
            t0 = time.perf_counter()
            try:
                async with c.stream("POST", f"/v1/sessions/{sid}/messages", json={"content": "go words=20"},
                                    headers=h) as r:
                    if r.status_code != 200:
                        errors.append(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
                        return
                    events = await _events(r)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            text = "".join(json.loads(d)["text"] for _, e, d, _ in events if e == "delta")
            if not events or events[-1][1] != "done" or text != expected:
                errors.append(f"run ended {events[-1][1] if events else 'empty'}, text {text[:40]!r}")
                return
            latencies.append(time.perf_counter() - t0)

        import resource

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(s) for s in sessions))
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM entity_message WHERE tenant_id = %s AND role = 'assistant' AND status = 'complete'"
            " AND content = %s", (tenant, expected))).fetchone()
        # the turn as the service ran it (the library's own api-call record: provider call to final write)
        turn = await (await conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM entity_api_call WHERE tenant_id = %s",
            (tenant,))).fetchone()
    saved = int(row[0]) if row else 0
    return {"runs": n, "errors": len(errors), "error_samples": errors[:5], "saved_complete": saved,
            "wall_s": round(wall, 2), "runs_per_second": round(n / wall, 1), "run_latency": stats(latencies),
            "server_turn_ms": {"median_ms": turn[0], "p95_ms": turn[1]} if turn else None,
            "client_cpu_s": round(client_cpu, 2)}


async def _delta_latency(base: str, key: str, url: str, tenant: uuid.UUID, user: uuid.UUID, runs: int,
                         n: int) -> dict[str, Any]:
    import json

    h = {"Authorization": f"Bearer {key}"}
    service: list[float] = []
    library: list[float] = []
    store = await PostgresStore.connect(url)

    class Stamps:
        name, default_model = "stamps", "stamps"

        def count_tokens(self, text: str) -> int:
            return len(text) // 4

        def stream(self, messages: Any, params: Any) -> Any:
            return stamps(n, 0.002)

        async def aclose(self) -> None:
            return None

    try:
        async with httpx2.AsyncClient(base_url=base, timeout=60) as c:
            for _ in range(runs):
                sid = (await c.post("/v1/sessions", json={}, headers=h)).json()["id"]
                async with c.stream("POST", f"/v1/sessions/{sid}/messages",
                                    json={"content": f"go stamps={n} delay=0.002"}, headers=h) as r:
                    for _, e, d, at in await _events(r):
                        if e == "delta":
                            service.append(at - float(json.loads(d)["text"].rstrip(";")))
                plugin = PersistencePlugin("bench", store, user, tenant, None, None, record_delta_offsets=True)
                agent = await (LLMAgentBuilder().with_provider(Stamps()).with_user(user).with_tenant(tenant)
                               .with_persistence_plugin(plugin).build_async())
                async for delta in agent.chat_stream("go"):
                    library.append(time.time() - float(delta.rstrip(";")))
    finally:
        await store.close()
    s, lib = stats(service), stats(library)
    return {"deltas_per_run": n, "runs": runs, "service": s, "library": lib,
            "added_median_ms": round(s["median_ms"] - lib["median_ms"], 3),
            "added_p95_ms": round(s["p95_ms"] - lib["p95_ms"], 3)}


async def _resume(a: str, b: str, key: str, n: int) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {key}"}
    samples: dict[str, list[float]] = {"other_process": [], "same_process": [], "request_floor": []}
    async with httpx2.AsyncClient(timeout=60) as c:
        for i in range(n):
            target = "other_process" if i % 2 == 0 else "same_process"
            sid = (await c.post(f"{a}/v1/sessions", json={}, headers=h)).json()["id"]
            async with c.stream("POST", f"{a}/v1/sessions/{sid}/messages",
                                json={"content": "go words=400 delay=0.01"}, headers=h) as r:
                first = await _events(r, stop_after=3)
            run_id = __import__("json").loads(first[0][2])["run_id"]
            base = b if target == "other_process" else a
            t0 = time.time()
            async with c.stream("GET", f"{base}/v1/runs/{run_id}/events",
                                headers={**h, "Last-Event-ID": "3"}) as r:
                got = await _events(r, stop_after=1)
            assert got and got[0][0] == 4, got
            samples[target].append(got[0][3] - t0)
            t1 = time.perf_counter()  # what any authenticated request costs here: the floor under a resume
            await c.get(f"{base}/v1/runs/{run_id}", headers=h)
            samples["request_floor"].append(time.perf_counter() - t1)
            await c.post(f"{a}/v1/runs/{run_id}/cancel", headers=h)
    return {k: stats(v) for k, v in samples.items()}


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    async with pg_schema(admin_url, "serve") as (url, _):
        (pa, a), (pb, b) = await _start(url), await _start(url)
        try:
            store = await PostgresStore.connect(url)
            tenant, user = uuid.uuid4(), uuid.uuid4()
            _, key = await issue_api_key(store, tenant, user, "bench")
            await store.close()
            out: dict[str, Any] = {}
            out["load"] = await _load(a, key, url, tenant, mode.n(500, 50))
            out["delta_latency"] = await _delta_latency(a, key, url, tenant, user, mode.n(10, 2), mode.n(200, 50))
            out["resume"] = await _resume(a, b, key, mode.n(40, 6))
            return out
        finally:
            for p in (pa, pb):
                p.terminate()
                p.wait(15)
