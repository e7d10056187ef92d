"""What history threading costs a request: ``Store.find_thread`` on PostgreSQL for a user with many sessions.

A fresh schema, one user with ``--sessions`` sessions of ``--messages`` messages each (written with the SQL the
library's rows have, unlinked, as rows from before migration 0010 are). Measured: the first lookup (it links
every one of the user's rows), then the steady state, where each request finds one new round since the last
(a user message and its reply, appended, then looked up with the whole history: what a Chat Completions client
resending its conversation costs), and a lookup that matches nothing. Run: ``python bench/thread.py`` with
``MOFA_BENCH_DATABASE_URL`` (or ``MOFA_TEST_DATABASE_URL``) set; ``--json`` prints the numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import psycopg
from _common import stats

from mofa_sdk.entities import Message
from mofa_sdk.llm import ChatMessage
from mofa_sdk.persistence import connect_store
from mofa_sdk.persistence._chain import chain_of

_FILL = """
WITH s AS (
  INSERT INTO entity_session (id, tenant_id, user_id, last_seq) VALUES (%(sid)s, %(tenant)s, %(user)s, %(n)s)
  RETURNING id)
INSERT INTO entity_message (id, session_id, tenant_id, user_id, seq, role, content, status)
SELECT gen_random_uuid(), s.id, %(tenant)s, %(user)s, g,
       CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
       CASE WHEN g %% 2 = 1 THEN 'Question ' || g || ' of ' || %(sid)s::text ELSE 'An answer of a few words.' END,
       'complete'
FROM s, generate_series(1, %(n)s) AS g
"""


def _history(sid: uuid.UUID, n: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Question {g} of {sid}") if g % 2 == 1
            else ChatMessage(role="assistant", content="An answer of a few words.") for g in range(1, n + 1)]


async def measure(admin: str, sessions: int, messages: int, rounds: int) -> dict[str, object]:
    schema = f"mofa_bench_thread_{uuid.uuid4().hex[:8]}"
    url = f"{admin}{'&' if '?' in admin else '?'}options=-csearch_path%3D{schema}"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        store = await connect_store(url)
        try:
            tenant, user = uuid.uuid4(), uuid.uuid4()
            sids = [uuid.uuid4() for _ in range(sessions)]
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for sid in sids:
                    await conn.execute(_FILL, {"sid": sid, "tenant": tenant, "user": user, "n": messages})
                await conn.execute("ANALYZE entity_message")
            target = sids[len(sids) // 2]
            history = _history(target, messages)
            t0 = time.perf_counter()
            found = await store.find_thread(tenant, user, chain_of(history))
            first_ms = (time.perf_counter() - t0) * 1000
            assert found is not None and found.session_id == target and found.matched == messages
            steady: list[float] = []
            for i in range(rounds):
                new = [ChatMessage(role="user", content=f"more {i}"), ChatMessage(role="assistant", content="ok")]
                await store.save_messages([Message(session_id=target, tenant_id=tenant, user_id=user, role=m.role,
                                                   content=m.content) for m in new])
                history += new
                t0 = time.perf_counter()
                found = await store.find_thread(tenant, user, chain_of([*history, ChatMessage("user", "next")])[:-1])
                steady.append(time.perf_counter() - t0)
                assert found is not None and found.matched == len(history)
            miss: list[float] = []
            for i in range(rounds):
                t0 = time.perf_counter()
                assert await store.find_thread(tenant, user, chain_of([ChatMessage("user", f"nobody said {i}")])) \
                    is None
                miss.append(time.perf_counter() - t0)
        finally:
            await store.close()
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {"sessions": sessions, "messages_per_session": messages, "rows": sessions * messages,
            "first_lookup_ms": round(first_ms, 2), "steady": stats(steady), "miss": stats(miss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("MOFA_BENCH_DATABASE_URL") or os.environ.get("MOFA_TEST_DATABASE_URL")
    if not admin:
        sys.exit("set MOFA_BENCH_DATABASE_URL (or MOFA_TEST_DATABASE_URL) to a PostgreSQL database")
    out = asyncio.run(measure(admin, args.sessions, args.messages, args.rounds))
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
