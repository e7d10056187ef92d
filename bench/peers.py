"""5. Peers: the same turn on what users would otherwise pick, at turn 10 and at turn 1,000.

One turn = read the last 2 rounds, append the user message, append the reply, each library used the
way its documentation shows (async API, PostgreSQL). Histories are filled with INSERT ... SELECT
generate_series in each library's own row format; a sample at "turn 10" runs on a session holding 18
messages, one at "turn 1,000" on one holding 1,998 (10 samples per session: it grows by 1 %).

mofa appears twice: its store doing exactly those three operations, and its agent turn (the window kept
in memory, the reply and its api-call row written in one transaction).
"""

from __future__ import annotations

import gc
import json
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from _common import AGENT, REPLY, TENANT, USER, Mode, fill_session, pg_schema, stats

QUESTION = "And what about the next one?"
SIZES = {"turn_10": 18, "turn_1000": 1998}
Turn = Callable[[Any], Awaitable[None]]


class Peer:
    """Set up once, then ``sessions(history, count)`` handles and ``turn(handle)``."""

    name = ""
    package = ""

    async def setup(self, url: str, schema: str) -> None: ...
    async def sessions(self, history: int, count: int) -> list[Any]: raise NotImplementedError
    async def turn(self, handle: Any) -> None: raise NotImplementedError
    async def close(self) -> None: ...


def _asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1].split("?", 1)[0]


def _psycopg_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1].split("?", 1)[0]


class LangChain(Peer):
    name, package = "langchain-postgres PostgresChatMessageHistory", "langchain-postgres"
    table = "lc_message_store"

    async def setup(self, url: str, schema: str) -> None:
        from langchain_core.messages import AIMessage, HumanMessage, message_to_dict
        from langchain_postgres import PostgresChatMessageHistory

        self.cls, self.human, self.ai = PostgresChatMessageHistory, HumanMessage, AIMessage
        self.rows = (json.dumps(message_to_dict(HumanMessage(QUESTION))),
                     json.dumps(message_to_dict(AIMessage(REPLY))))
        self.conn = await psycopg.AsyncConnection.connect(url)
        await PostgresChatMessageHistory.acreate_tables(self.conn, self.table)

    async def sessions(self, history: int, count: int) -> list[Any]:
        ids = [uuid.uuid4() for _ in range(count)]
        await self.conn.execute(
            f"INSERT INTO {self.table} (session_id, message) SELECT s, CASE WHEN g %% 2 = 1 "
            "THEN %(u)s::jsonb ELSE %(a)s::jsonb END FROM unnest(%(ids)s::uuid[]) s, "
            "generate_series(1, %(n)s) g ORDER BY s, g",
            {"u": self.rows[0], "a": self.rows[1], "ids": ids, "n": history},
        )
        await self.conn.execute(f"ANALYZE {self.table}")
        await self.conn.commit()
        return [self.cls(self.table, str(i), async_connection=self.conn) for i in ids]

    async def turn(self, h: Any) -> None:
        window = (await h.aget_messages())[-4:]
        assert len(window) == 4
        await h.aadd_messages([self.human(QUESTION)])
        await h.aadd_messages([self.ai(REPLY)])

    async def close(self) -> None:
        await self.conn.close()


class AgentsSDK(Peer):
    name, package = "OpenAI Agents SDK SQLAlchemySession", "openai-agents"

    async def setup(self, url: str, schema: str) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        self.cls = SQLAlchemySession
        self.engine = create_async_engine(
            _asyncpg_url(url), connect_args={"server_settings": {"search_path": schema}}
        )
        first = SQLAlchemySession("setup", engine=self.engine, create_tables=True)
        await first.get_items(limit=1)  # creates the tables
        self.url = url

    async def sessions(self, history: int, count: int) -> list[Any]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        user = json.dumps({"role": "user", "content": QUESTION}, separators=(",", ":"))
        reply = json.dumps({"role": "assistant", "content": REPLY}, separators=(",", ":"))
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute("INSERT INTO agent_sessions (session_id) SELECT unnest(%s::text[])", (ids,))
            await conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) SELECT s, CASE WHEN g %% 2 = 1 "
                "THEN %(u)s ELSE %(a)s END FROM unnest(%(ids)s::text[]) s, generate_series(1, %(n)s) g "
                "ORDER BY s, g",
                {"u": user, "a": reply, "ids": ids, "n": history},
            )
            await conn.execute("ANALYZE agent_messages")
        return [self.cls(i, engine=self.engine) for i in ids]

    async def turn(self, s: Any) -> None:
        window = await s.get_items(limit=4)
        assert len(window) == 4
        await s.add_items([{"role": "user", "content": QUESTION}])
        await s.add_items([{"role": "assistant", "content": REPLY}])

    async def close(self) -> None:
        await self.engine.dispose()


class LlamaIndex(Peer):
    name, package = "llama-index PostgresChatStore", "llama-index-storage-chat-store-postgres"
    table = "li_chatstore"

    async def setup(self, url: str, schema: str) -> None:
        from llama_index.core.llms import ChatMessage
        from llama_index.storage.chat_store.postgres import PostgresChatStore

        self.msg = ChatMessage
        self.rows = (ChatMessage(role="user", content=QUESTION).model_dump_json(),
                     ChatMessage(role="assistant", content=REPLY).model_dump_json())
        self.store = PostgresChatStore.from_params(
            connection_string=_psycopg_url(url), async_connection_string=_asyncpg_url(url),
            table_name=self.table, schema_name=schema,
        )
        self.url, self.schema = url, schema

    async def sessions(self, history: int, count: int) -> list[Any]:
        keys = [str(uuid.uuid4()) for _ in range(count)]
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(
                f'INSERT INTO "{self.schema}".{self.table} (key, value) SELECT k, (SELECT array_agg('
                "CASE WHEN g %% 2 = 1 THEN %(u)s::json ELSE %(a)s::json END ORDER BY g) "
                "FROM generate_series(1, %(n)s) g) FROM unnest(%(keys)s::text[]) k",
                {"u": self.rows[0], "a": self.rows[1], "keys": keys, "n": history},
            )
        return keys

    async def turn(self, key: Any) -> None:
        window = (await self.store.aget_messages(key))[-4:]
        assert len(window) == 4
        await self.store.async_add_message(key, self.msg(role="user", content=QUESTION))
        await self.store.async_add_message(key, self.msg(role="assistant", content=REPLY))


class MofaStore(Peer):
    name, package = "mofa-sdk PostgresStore (the same 3 operations)", "mofa-sdk"

    async def setup(self, url: str, schema: str) -> None:
        from mofa_sdk.persistence import Message, PostgresStore

        self.msg = Message
        self.store = await PostgresStore.connect(url)
        self.url = url

    async def sessions(self, history: int, count: int) -> list[Any]:
        return [await fill_session(self.url, history) for _ in range(count)]

    async def turn(self, sid: Any) -> None:
        window = await self.store.get_last_messages(TENANT, sid, 4)
        assert len(window) == 4
        user = await self.store.save_message(self.msg(
            session_id=sid, tenant_id=TENANT, user_id=USER, agent_id=AGENT, role="user", content=QUESTION
        ))  # fmt: skip
        await self.store.save_message(self.msg(
            session_id=sid, tenant_id=TENANT, user_id=USER, agent_id=AGENT, role="assistant", content=REPLY,
            parent_message_id=user.id,
        ))  # fmt: skip

    async def close(self) -> None:
        await self.store.close()


class MofaAgent(MofaStore):
    name, package = "mofa-sdk agent turn (window in memory, + api-call row)", "mofa-sdk"

    async def sessions(self, history: int, count: int) -> list[Any]:
        from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
        from mofa_sdk.persistence import PersistencePlugin

        agents = []
        for sid in await super().sessions(history, count):
            plugin = PersistencePlugin.from_store("bench", self.store, USER, TENANT, AGENT, sid)
            agents.append(await (
                LLMAgentBuilder().with_provider(ScriptedProvider(REPLY)).with_sliding_window(2)
                .with_persistence_plugin(plugin).build_async()
            ))  # fmt: skip
        return agents

    async def turn(self, agent: Any) -> None:
        await agent.chat(QUESTION)


PEERS: list[type[Peer]] = [MofaStore, MofaAgent, LangChain, AgentsSDK, LlamaIndex]


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    n, rounds = mode.n(200, 20), mode.n(4, 2)
    per_session = {"turn_10": 1, "turn_1000": 10}
    warm = mode.n(10, 3)
    results: dict[str, Any] = {}
    async with pg_schema(admin_url, "peers") as (url, schema):
        ready: dict[str, tuple[Peer, dict[str, list[Any]]]] = {}
        for cls in PEERS:
            peer = cls()
            entry: dict[str, Any] = {"name": peer.name, "package": peer.package, "version": _version(peer.package)}
            results[cls.__name__] = entry
            try:
                await peer.setup(url, schema)
                handles = {size: await peer.sessions(history, n // per_session[size])
                           for size, history in SIZES.items()}
                for h in await peer.sessions(SIZES["turn_10"], warm):  # warm-up
                    await peer.turn(h)
                ready[cls.__name__] = (peer, handles)
            except Exception as exc:  # a peer that cannot run here says why; no number is made up
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc(limit=3)
        samples: dict[str, dict[str, list[float]]] = {k: {s: [] for s in SIZES} for k in ready}
        # alternate peers in blocks, so that drift of the machine hits every peer alike
        for r in range(rounds):
            for key, (peer, handles) in ready.items():
                for size, hs in handles.items():
                    share = hs[r * len(hs) // rounds:(r + 1) * len(hs) // rounds]
                    gc.collect()
                    for h in share:
                        for _ in range(per_session[size]):
                            t0 = time.perf_counter()
                            try:
                                await peer.turn(h)
                            except Exception as exc:
                                results[key].setdefault("error", f"{type(exc).__name__}: {exc}")
                                continue
                            samples[key][size].append(time.perf_counter() - t0)
        for key, (peer, _) in ready.items():
            await peer.close()
            entry = results[key]
            for size in SIZES:
                if samples[key][size]:
                    entry[size] = stats(samples[key][size])
            if "turn_10" in entry and "turn_1000" in entry:
                entry["growth"] = round(entry["turn_1000"]["median_ms"] / entry["turn_10"]["median_ms"], 3)
    mofa = results["MofaStore"].get("turn_10", {}).get("median_ms")
    peers = {k: v["turn_10"]["median_ms"] for k, v in results.items()
             if not k.startswith("Mofa") and "turn_10" in v}
    summary: dict[str, Any] = {"peers": results, "histories": SIZES, "samples_per_size": n}
    if mofa and peers:
        fastest = min(peers, key=lambda k: peers[k])
        summary["fastest_peer"] = fastest
        summary["speedup_vs_fastest"] = round(peers[fastest] / mofa, 3)
        big = {k: v["turn_1000"]["median_ms"] for k, v in results.items()
               if not k.startswith("Mofa") and "turn_1000" in v}
        if big and "turn_1000" in results["MofaStore"]:
            fastest_big = min(big, key=lambda k: big[k])
            summary["speedup_vs_fastest_at_1000"] = round(
                big[fastest_big] / results["MofaStore"]["turn_1000"]["median_ms"], 3
            )
    return summary
