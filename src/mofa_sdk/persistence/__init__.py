"""Persistence: stores (PostgreSQL, SQLite, in-memory), the automatic plugin, manual context, quick helpers."""

from ..entities import (
    Agent,
    AgentConfig,
    LLMApiCall,
    Message,
    Provider,
    QueryFilter,
    Session,
    UsageStatistics,
)
from ._connect import connect_store
from ._memory import InMemoryStore
from ._postgres import PostgresStore
from ._sqlite import SqliteStore
from ._store import UNSET, Store

__all__ = [
    "UNSET",
    "Agent",
    "AgentConfig",
    "InMemoryStore",
    "LLMApiCall",
    "Message",
    "PostgresStore",
    "Provider",
    "QueryFilter",
    "Session",
    "SqliteStore",
    "Store",
    "UsageStatistics",
    "connect_store",
]
