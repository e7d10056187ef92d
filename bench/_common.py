"""What every measurement shares: timing, statistics, a throwaway PostgreSQL schema, sessions filled fast."""

from __future__ import annotations

import gc
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg

TENANT = uuid.UUID("00000000-0000-4000-8000-00000000b001")
USER = uuid.UUID("00000000-0000-4000-8000-00000000b002")
AGENT = uuid.UUID("00000000-0000-4000-8000-00000000b003")
REPLY = "Sure. Here is a short answer of about twenty words, the size of a typical chat reply in the benchmark."


@dataclass(frozen=True)
class Mode:
    """How hard to measure: ``quick`` is a smoke run (seconds), the default a real one (minutes)."""

    quick: bool

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def stats(samples_s: list[float]) -> dict[str, float]:
    """Median and p95 in milliseconds (nearest-rank p95)."""
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"median_ms": round(statistics.median(ms), 4), "p95_ms": round(p95, 4), "n": len(ms)}


async def sample(fn: Callable[[], Awaitable[Any]], n: int, warmup: int) -> list[float]:
    """Time ``n`` calls of ``fn`` after ``warmup`` untimed ones. The GC is paused while timing (collected
    between runs) so that one variant does not pay for another's garbage."""
    for _ in range(warmup):
        await fn()
    out: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            t0 = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t0)
            if i % 50 == 49:
                gc.collect()
    finally:
        gc.enable()
    return out


async def interleave(variants: dict[str, Callable[[], Awaitable[Any]]], n: int, warmup: int,
                     rounds: int = 5) -> dict[str, list[float]]:
    """Sample several variants in alternating blocks, so that drift of the machine hits all alike."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    per = max(1, n // rounds)
    for r in range(rounds):
        for name, fn in variants.items():
            samples[name] += await sample(fn, per, warmup if r == 0 else max(1, warmup // 5))
    return samples


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@asynccontextmanager
async def pg_schema(admin_url: str, label: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh schema for one measurement: yields (url whose search_path is it, its name); dropped after."""
    name = f"mofa_bench_{label}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_search_path(admin_url, name), name
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# INSERT ... SELECT generate_series: a session of a million messages is filled in seconds, with the same
# rows (alternating user/assistant, consecutive seqs) the library would have written.
_FILL_SQL = """
WITH s AS (
  INSERT INTO entity_session (id, tenant_id, user_id, agent_id, last_seq)
  VALUES (%(sid)s, %(tenant)s, %(user)s, %(agent)s, %(n)s) RETURNING id)
INSERT INTO entity_message (id, session_id, tenant_id, user_id, agent_id, seq, role, content, status)
SELECT gen_random_uuid(), s.id, %(tenant)s, %(user)s, %(agent)s, g,
       CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
       CASE WHEN g %% 2 = 1 THEN 'Question number ' || g ELSE %(reply)s END, 'complete'
FROM s, generate_series(1, %(n)s) AS g
"""


async def fill_session(url: str, n: int) -> uuid.UUID:
    """A mofa session of ``n`` messages (in the schema ``url`` points at), analysed for the planner."""
    sid = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            _FILL_SQL, {"sid": sid, "tenant": TENANT, "user": USER, "agent": AGENT, "n": n, "reply": REPLY}
        )
        await conn.execute("ANALYZE entity_session")
        await conn.execute("ANALYZE entity_message")
    return sid


def rss_peak_reset() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kib(field: str = "VmHWM") -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
