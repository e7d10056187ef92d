"""The blocking facade, for scripts and notebooks: the same API with no ``await``.

    from mofa_sdk.sync import quick_agent_with_sqlite

    agent = quick_agent_with_sqlite("You are helpful.").with_sliding_window(2).build()
    print(agent.chat("Hello"))
    for text in agent.chat_stream("Tell me more"):
        print(text, end="", flush=True)

Every object is the async one seen through one event loop on a daemon thread: coroutines are run to their
result (``build()`` is ``build_async()``), streams are plain iterators, ``with store.transaction() as tx``
works, and ``blocking(obj)`` wraps anything else of the async API. It works inside a running event loop
(Jupyter). Do not call it from async code of your own (a hook): await the async API there.
"""

from __future__ import annotations

from typing import Any

from .. import llm, persistence
from ._proxy import Blocking, blocking

__all__ = [
    "Blocking",
    "InMemoryStore",
    "LLMAgentBuilder",
    "PersistenceContext",
    "PersistencePlugin",
    "PostgresStore",
    "SqliteStore",
    "blocking",
    "connect_store",
    "quick_agent",
    "quick_agent_with_memory",
    "quick_agent_with_postgres",
    "quick_agent_with_sqlite",
]

LLMAgentBuilder: Any = Blocking(llm.LLMAgentBuilder)
PersistenceContext: Any = Blocking(persistence.PersistenceContext)
PersistencePlugin: Any = Blocking(persistence.PersistencePlugin)
PostgresStore: Any = Blocking(persistence.PostgresStore)
SqliteStore: Any = Blocking(persistence.SqliteStore)
InMemoryStore: Any = Blocking(persistence.InMemoryStore)
connect_store: Any = Blocking(persistence.connect_store)
quick_agent: Any = Blocking(persistence.quick_agent)
quick_agent_with_memory: Any = Blocking(persistence.quick_agent_with_memory)
quick_agent_with_postgres: Any = Blocking(persistence.quick_agent_with_postgres)
quick_agent_with_sqlite: Any = Blocking(persistence.quick_agent_with_sqlite)
