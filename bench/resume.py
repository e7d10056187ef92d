"""2. Resume cost against history: ``build_async()`` on sessions of growing length, window 2.

Sessions are filled with INSERT ... SELECT generate_series (rows like the library's own). Each resume
builds a new agent on the shared store, so it pays for what a restarted process pays: reading the
session row, settling replies left ``streaming``, and the window's rows.
"""

from __future__ import annotations

from typing import Any

from _common import AGENT, TENANT, USER, Mode, fill_session, pg_schema, sample, stats

from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, PostgresStore


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    lengths = [10, 1_000, 10_000] if mode.quick else [10, 100, 1_000, 10_000, 100_000]
    n, warmup = mode.n(300, 30), mode.n(20, 5)
    provider = ScriptedProvider("ok")
    async with pg_schema(admin_url, "resume") as (url, _):
        store = await PostgresStore.connect(url)
        try:
            sessions = {length: await fill_session(url, length) for length in lengths}

            def resume(sid: Any) -> Any:
                async def once() -> None:
                    plugin = PersistencePlugin.from_store("bench", store, USER, TENANT, AGENT, sid)
                    agent = await (
                        LLMAgentBuilder().with_provider(provider).with_sliding_window(2)
                        .with_persistence_plugin(plugin).build_async()
                    )
                    assert len(agent.history) == 4, agent.history  # 2 rounds (no system prompt)

                return once

            async def measure() -> list[dict[str, Any]]:
                # alternate between lengths so that drift of the machine does not look like growth
                samples: dict[int, list[float]] = {length: [] for length in lengths}
                rounds = 5
                for r in range(rounds):
                    for length, sid in sessions.items():
                        samples[length] += await sample(resume(sid), n // rounds, warmup if r == 0 else 2)
                return [{"messages": length, **stats(samples[length])} for length in lengths]

            points = await measure()
        finally:
            await store.close()
    return {
        "window": 2,
        "points": points,
        "largest": points[-1]["messages"],
        **_ratios(points),
    }


def _ratios(points: list[dict[str, Any]]) -> dict[str, float]:
    first, last = points[0], points[-1]
    return {
        "ratio_largest_to_smallest": round(last["median_ms"] / first["median_ms"], 3),
        "ratio_largest_to_smallest_p95": round(last["p95_ms"] / first["p95_ms"], 3),
    }
