"""Persistence: stores (PostgreSQL, SQLite, in-memory), the automatic plugin, manual context, quick helpers.

``PostgresStore`` is imported on first use, so that a program on SQLite never loads psycopg and libpq.
"""

from typing import TYPE_CHECKING, Any

from ..entities import (
    Agent,
    AgentConfig,
    ApiKey,
    LLMApiCall,
    Message,
    MessagePart,
    MessageToolCall,
    Provider,
    QueryFilter,
    Session,
    UsageStatistics,
)
from ._api_keys import API_KEY_PREFIX, authenticate_api_key, hash_api_key, issue_api_key, mask_api_key
from ._chain import ThreadMatch, chain_of, in_chain
from ._chat_rows import stored_parts
from ._connect import connect_store, default_database_url
from ._context import PersistenceContext
from ._memory import InMemoryStore
from ._pages import Cursor, Page
from ._plugin import COMPACTION_ASK, PendingReply, PersistencePlugin
from ._protocols import SessionFinder, SessionLister, SessionReader
from ._quick import quick_agent, quick_agent_with_memory, quick_agent_with_postgres, quick_agent_with_sqlite
from ._secrets import is_encrypted, keys_left_encrypted
from ._sessions import owned_session
from ._sqlite import SqliteStore, path_from_url
from ._store import MAX_PAGE, UNSET, Store, search_words
from ._turns import KEEP, Keep, SettingsRequest, StartedTurn, TurnEngine, TurnOptions, TurnSession
from ._usage import UsageGroup, UsageKey

if TYPE_CHECKING:
    from ._postgres import PostgresStore

__all__ = [
    "API_KEY_PREFIX",
    "COMPACTION_ASK",
    "KEEP",
    "MAX_PAGE",
    "UNSET",
    "Agent",
    "AgentConfig",
    "ApiKey",
    "Cursor",
    "InMemoryStore",
    "Keep",
    "LLMApiCall",
    "Message",
    "MessagePart",
    "MessageToolCall",
    "Page",
    "PendingReply",
    "PersistenceContext",
    "PersistencePlugin",
    "PostgresStore",
    "Provider",
    "QueryFilter",
    "Session",
    "SessionFinder",
    "SessionLister",
    "SessionReader",
    "SettingsRequest",
    "SqliteStore",
    "StartedTurn",
    "Store",
    "ThreadMatch",
    "TurnEngine",
    "TurnOptions",
    "TurnSession",
    "UsageGroup",
    "UsageKey",
    "UsageStatistics",
    "authenticate_api_key",
    "chain_of",
    "connect_store",
    "default_database_url",
    "hash_api_key",
    "in_chain",
    "is_encrypted",
    "issue_api_key",
    "keys_left_encrypted",
    "mask_api_key",
    "owned_session",
    "path_from_url",
    "quick_agent",
    "quick_agent_with_memory",
    "quick_agent_with_postgres",
    "quick_agent_with_sqlite",
    "search_words",
    "stored_parts",
]


def __getattr__(name: str) -> Any:
    if name != "PostgresStore":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._postgres import PostgresStore

    globals()[name] = PostgresStore
    return PostgresStore


def __dir__() -> list[str]:
    return sorted(__all__)
