"""1. Turn overhead: what persistence adds to one turn, against the same SQL sent by the raw driver.

A persisted turn (user message; assistant reply + api-call row in one transaction; the window is kept in
memory, read from the database only when a session is opened) with a zero-latency scripted provider, minus
the same turn with no persistence. The floor sends the very statements the store sends, with plain
parameters, on one connection: psycopg for PostgreSQL, aiosqlite for SQLite.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
from _common import AGENT, REPLY, TENANT, USER, Mode, interleave, pg_schema, stats

from mofa_sdk.llm import LLMAgent, LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, PostgresStore, SqliteStore, Store
from mofa_sdk.persistence._postgres_sql import DIALECT as PG
from mofa_sdk.persistence._sql import insert_call_sql, save_message_sql
from mofa_sdk.persistence._tables import CALL as CALL_TABLE
from mofa_sdk.persistence._tables import MESSAGE

QUESTION = "What is the capital of France, and why is it there?"


def _builder() -> LLMAgentBuilder:
    return (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider(REPLY))
        .with_id(AGENT).with_user(USER).with_tenant(TENANT)
        .with_system_prompt("You are terse.")
        .with_sliding_window(2)
    )


async def persisted_agent(store: Store) -> LLMAgent:
    plugin = PersistencePlugin.from_store("bench", store, USER, TENANT, AGENT)
    return await _builder().with_persistence_plugin(plugin).build_async()


# -- the SQL floor -----------------------------------------------------------------------------------
class PgFloor:
    """The statements of one persisted turn, on one psycopg connection (autocommit, like the pool's)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], sid: uuid.UUID) -> None:
        self.conn, self.sid = conn, sid

    def _msg(self, role: str, content: str, parent: uuid.UUID | None, now: datetime) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(), "session_id": self.sid, "tenant_id": TENANT, "user_id": USER,
            "agent_id": AGENT, "seq": None, "role": role, "content": content, "status": "complete",
            "metadata": psycopg.types.json.Jsonb({}), "nul_escaped": False, "parent_message_id": parent,
            "create_time": now, "update_time": now, "delta_ends": None, "request_params": None,
            "tool_calls": psycopg.types.json.Jsonb([]), "tool_call_id": None, "is_error": False,
            "parts": psycopg.types.json.Jsonb([]), "compaction": False, "now": now, "n": 1,
        }  # fmt: skip

    async def turn(self) -> None:
        now = datetime.now(UTC)
        user = self._msg("user", QUESTION, None, now)
        await self.conn.execute(save_message_sql(PG), user)
        reply = self._msg("assistant", REPLY, user["id"], now)
        call = {c: None for c in CALL_TABLE.columns} | {
            "id": uuid.uuid4(), "tenant_id": TENANT, "session_id": self.sid, "user_id": USER,
            "agent_id": AGENT, "request_message_id": user["id"], "response_message_id": reply["id"],
            "model_name": "scripted-model", "status": "success", "prompt_tokens": 30,
            "completion_tokens": 20, "total_tokens": 50, "tokens_estimated": True, "latency_ms": 0,
            "time_to_first_token_ms": 0, "create_time": now,
        }  # fmt: skip
        async with self.conn.transaction():
            await self.conn.execute(save_message_sql(PG), reply)
            await self.conn.execute(insert_call_sql(PG), call)


class SqliteFloor:
    """The statements of one persisted turn on one aiosqlite connection: two BEGIN IMMEDIATE transactions."""

    BUMP = (
        "UPDATE entity_session SET last_seq = last_seq + 1, update_time = ? WHERE id = ? AND tenant_id = ?"
        " RETURNING last_seq"
    )
    MSG = f"INSERT INTO entity_message ({MESSAGE.cols()}) VALUES ({', '.join('?' * len(MESSAGE.columns))})"
    CALL = (
        f"INSERT INTO entity_api_call ({CALL_TABLE.cols()}) SELECT {', '.join('?' * len(CALL_TABLE.columns))} "
        "WHERE EXISTS (SELECT 1 FROM entity_session WHERE id = ? AND tenant_id = ?)"
    )

    def __init__(self, conn: aiosqlite.Connection, sid: uuid.UUID) -> None:
        self.conn, self.sid = conn, str(sid)

    async def _insert(self, role: str, content: str, parent: str | None, now: str) -> str:
        ((seq,),) = await self.conn.execute_fetchall(self.BUMP, (now, self.sid, str(TENANT)))
        mid = str(uuid.uuid4())
        await self.conn.execute(self.MSG, (
            mid, self.sid, str(TENANT), str(USER), str(AGENT), seq, role, content, "complete", "{}", 0,
            parent, now, now, None, None, "[]", None, 0, "[]", 0,
        ))  # fmt: skip
        return mid

    async def turn(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.conn.execute("BEGIN IMMEDIATE")
        user = await self._insert("user", QUESTION, None, now)
        await self.conn.execute("COMMIT")
        await self.conn.execute("BEGIN IMMEDIATE")
        reply = await self._insert("assistant", REPLY, user, now)
        await self.conn.execute(self.CALL, (
            str(uuid.uuid4()), str(TENANT), self.sid, str(USER), str(AGENT), user, reply, "scripted-model",
            "success", None, None, 30, 20, 50, None, None, 1, None, None, 0, 0, None, None, now, None,
            self.sid, str(TENANT),
        ))  # fmt: skip
        await self.conn.execute("COMMIT")


# -- the measurement ---------------------------------------------------------------------------------
def _summary(samples: dict[str, list[float]], floor_key: str, persisted_key: str) -> dict[str, Any]:
    out: dict[str, Any] = {k: stats(v) for k, v in samples.items()}
    bare, persisted, floor = out["bare"], out[persisted_key], out[floor_key]
    overhead = {q: round(persisted[q] - bare[q], 4) for q in ("median_ms", "p95_ms")}
    out["overhead"] = overhead
    out["ratio_to_floor"] = round(overhead["median_ms"] / floor["median_ms"], 3)
    out["ratio_to_floor_p95"] = round(overhead["p95_ms"] / floor["p95_ms"], 3)
    return out


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    n, warmup = mode.n(1000, 60), mode.n(100, 10)
    bare = _builder().build()
    result: dict[str, Any] = {"reply_chars": len(REPLY), "runs": n, "warmup": warmup}

    async with pg_schema(admin_url, "turn") as (url, _):
        store = await PostgresStore.connect(url)
        try:
            agent = await persisted_agent(store)
            floor_agent = await persisted_agent(store)  # a session of its own for the floor's rows
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            floor = PgFloor(conn, floor_agent.session_id)
            samples = await interleave(
                {
                    "bare": lambda: bare.chat(QUESTION),
                    "persisted": lambda: agent.chat(QUESTION),
                    "floor": floor.turn,
                },
                n, warmup,
            )
            await conn.close()
            result["postgres"] = _summary(samples, "floor", "persisted")
        finally:
            await store.close()

    with tempfile.TemporaryDirectory(prefix="mofa-bench-") as tmp:
        store_l = await SqliteStore.connect(f"sqlite:///{Path(tmp) / 'mofa.db'}")
        floor_store = await SqliteStore.connect(f"sqlite:///{Path(tmp) / 'floor.db'}")
        try:
            agent = await persisted_agent(store_l)
            floor_sid = (await persisted_agent(floor_store)).session_id
            await floor_store.close()
            raw = await aiosqlite.connect(Path(tmp) / "floor.db", isolation_level=None)
            for pragma in ("journal_mode = WAL", "foreign_keys = ON", "synchronous = NORMAL"):
                await raw.execute(f"PRAGMA {pragma}")
            sfloor = SqliteFloor(raw, floor_sid)
            samples = await interleave(
                {
                    "bare": lambda: bare.chat(QUESTION),
                    "persisted": lambda: agent.chat(QUESTION),
                    "floor": sfloor.turn,
                },
                n, warmup,
            )
            await raw.close()
            result["sqlite"] = _summary(samples, "floor", "persisted")
        finally:
            await store_l.close()
    return result
