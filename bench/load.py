"""4. Load: many concurrent sessions on one agent and a PostgreSQL pool of 10.

One agent serves every session (as a server process would), with a zero-latency scripted provider, so
what is measured is the persistence path under contention: turns per second, turn latency, errors, the
process's peak memory (VmHWM, reset before the run) and the memory an idle session keeps (tracemalloc, in
a second, smaller pass).
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

from _common import AGENT, REPLY, TENANT, USER, Mode, pg_schema, rss_kib, rss_peak_reset, stats

from mofa_sdk.ids import uuid7
from mofa_sdk.llm import LLMAgent, LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, PostgresStore


async def _agent(store: PostgresStore) -> LLMAgent:
    plugin = PersistencePlugin.from_store("bench", store, USER, TENANT, AGENT)
    return await (
        LLMAgentBuilder().with_provider(ScriptedProvider(REPLY)).with_id(AGENT).with_user(USER)
        .with_tenant(TENANT).with_sliding_window(2).with_persistence_plugin(plugin).build_async()
    )


async def _sessions(agent: LLMAgent, sessions: int, turns: int) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []

    async def one_session() -> None:
        sid = uuid7()
        for i in range(turns):
            t0 = time.perf_counter()
            try:
                await agent.chat(f"Question {i} of the load test", session_id=sid)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one_session() for _ in range(sessions)))
    return latencies, errors


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    sessions, turns, pool = mode.n(200, 20), mode.n(10, 3), 10
    async with pg_schema(admin_url, "load") as (url, _):
        store = await PostgresStore.connect_with_options(url, max_connections=pool, min_connections=pool)
        try:
            agent = await _agent(store)
            await _sessions(agent, 10, 2)  # warm-up: connections, prepared statements
            gc.collect()
            peak_reset = rss_peak_reset()
            rss_before = rss_kib("VmRSS")
            t0 = time.perf_counter()
            latencies, errors = await _sessions(agent, sessions, turns)
            elapsed = time.perf_counter() - t0
            peak = rss_kib("VmHWM")

            # memory kept per idle session: a fresh agent, sessions opened and used, then left idle
            idle_agent = await _agent(store)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            await _sessions(idle_agent, sessions, 2)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            kept = sum(s.size_diff for s in after.compare_to(before, "filename"))
            stats_pool = store.pool_stats()
        finally:
            await store.close()
    return {
        "sessions": sessions,
        "turns_per_session": turns,
        "pool_size": pool,
        "turns": len(latencies) + len(errors),
        "turns_per_second": round(len(latencies) / elapsed, 1),
        "latency": stats(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "elapsed_s": round(elapsed, 3),
        "rss_before_mib": round(rss_before / 1024, 1) if rss_before else None,
        "peak_rss_mib": round(peak / 1024, 1) if peak and peak_reset else None,
        "idle_session_kib": round(kept / sessions / 1024, 2),
        "requests_waiting_at_end": stats_pool.get("requests_waiting", 0),
    }
