"""The store contract: one async API, implemented once in SQL (SqlStore) for PostgreSQL and SQLite; InMemoryStore
is the SQLite store on a private ``:memory:`` database.

Every read and write of sessions, messages and api calls is scoped by ``tenant_id``: asking with the
wrong tenant finds nothing and changes nothing. Writes take ``tx=`` (what ``store.transaction()`` yields,
or the driver's own connection inside the caller's transaction) so several writes commit or roll back
together; without it each write is its own transaction.

Every public method takes its arguments as :mod:`._args` says, by calling its helpers first thing (there is one
implementation, :class:`~._sql.SqlStore`): ids may be UUIDs or UUID strings in any case, agent codes and provider
names are looked up in the form they are stored in, and a value no store could hold is an error before any query.
"""

from __future__ import annotations

import abc
import contextvars
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from ..entities import (
    Agent,
    AgentConfig,
    ApiKey,
    LLMApiCall,
    Message,
    MessageStatus,
    Provider,
    QueryFilter,
    Session,
    SessionSettings,
    SettingsChange,
    UsageStatistics,
)
from ..errors import ConfigError, MofaError, PersistenceError, ValidationError
from ..ids import parse_uuid
from ._chain import ThreadMatch
from ._local_tx import LocalTransaction
from ._pages import Cursor, Page
from ._usage import UsageGroup, UsageKey

if TYPE_CHECKING:
    import aiosqlite
    import psycopg

    #: what ``tx=`` takes: what ``store.transaction()`` yields (a LocalTransaction on SQLite and in memory,
    #: a psycopg AsyncConnection on PostgreSQL), or the driver's own connection inside the caller's transaction
    Transaction: TypeAlias = LocalTransaction | psycopg.AsyncConnection[Any] | aiosqlite.Connection
else:
    Transaction = object  # the alias is for type checkers; psycopg and aiosqlite load only where used

__all__ = [
    "MAX_PAGE",
    "UNSET",
    "Store",
    "Transaction",
    "Unset",
    "check_page",
    "no_schema_diagnosis",
    "schema_fallback",
    "settle_status",
]

#: the largest page any paginated read returns; larger requests are a clear error, not a memory spike
MAX_PAGE = 10_000


class Unset:
    """Marks an argument that was not given (None is a value: "clear this field")."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


#: the shortest id fragment a lookup accepts: shorter ones match too much to be worth a query
MIN_ID_FRAGMENT = 4


def check_id_fragment(fragment: str) -> str:
    """An id fragment as lookups take it: 4 to 36 hex digits (dashes allowed), lower-cased."""
    frag = fragment.strip().lower() if isinstance(fragment, str) else ""
    if not MIN_ID_FRAGMENT <= len(frag) <= 36 or any(c not in "0123456789abcdef-" for c in frag):
        raise ValidationError(
            f"an id or id fragment is {MIN_ID_FRAGMENT} to 36 hex digits, got {fragment!r}"
        )
    return frag


def search_words(text: str) -> list[str]:
    """The words a message search looks for (every one must be in a message): letters and digits, lower-cased.
    Search syntax (quotes, operators) is not interpreted, so the three stores agree on what matches."""
    words = re.findall(r"\w+", text.casefold()) if isinstance(text, str) else []
    if not words:
        raise ValidationError(f"a search needs at least one word (letters or digits), got {text!r}")
    return words


def check_page(offset: int, limit: int) -> None:
    # the upper bound is the databases' (a 64-bit integer): beyond it a driver fails with no useful message
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**63:
        raise ConfigError(f"offset must be an integer from 0 to 2**63 - 1, got {offset!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")


def settle_status(message: Message, lease_seconds: float) -> Message:
    """A reply still ``streaming`` with no checkpoint for longer than the lease was left by a dead
    process: it reads as ``interrupted``. Every store applies this to every message it returns."""
    if message.status == "streaming":
        from ..ids import utc_now

        if (utc_now() - message.update_time).total_seconds() > lease_seconds:
            return message.model_copy(update={"status": "interrupted"})
    return message


#: set while a store works out why a query met a missing table or column (so that doing so cannot recurse),
#: and while it migrates (where "run the migrations" would be no advice)
_diagnosing: contextvars.ContextVar[bool] = contextvars.ContextVar("mofa_schema_diagnosis", default=False)


@contextmanager
def no_schema_diagnosis() -> Iterator[None]:
    """A missing table or column met in here gets the plain message, without asking the database why."""
    token = _diagnosing.set(True)
    try:
        yield
    finally:
        _diagnosing.reset(token)


def schema_fallback(doing: str, detail: str) -> PersistenceError:
    return PersistenceError(
        f"{doing}: the mofa schema is missing or differs from the migrations ({detail}); "
        "`mofa db status` shows which migrations are applied and what is missing"
    )


class Store(abc.ABC):
    """Base of every store. Subclasses implement the abstract methods; the rest is shared."""

    #: "postgres", "sqlite" or "memory"
    dialect: str
    #: a reply left ``streaming`` this long without a checkpoint reads as ``interrupted``
    streaming_lease_seconds: float = 5.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- schema ------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order; return the names applied now. Safe to run concurrently."""

    @abc.abstractmethod
    async def migration_status(self) -> list[tuple[str, datetime | None]]:
        """Every known migration with the time it was applied (None = pending)."""

    async def check_schema(self) -> list[str]:
        """What the database lacks of the schema the migrations create (tables, columns, indexes), one
        sentence each; empty when nothing is missing. Finds what a migrations table cannot show: a
        schema altered by hand after it was migrated."""
        return []

    async def schema_error(self, doing: str, detail: str) -> PersistenceError:
        """The error for a query that met a missing table or column: pending migrations say to migrate;
        a schema altered by hand says what is missing, since migrating would change nothing."""
        if _diagnosing.get():
            return schema_fallback(doing, detail)
        try:
            with no_schema_diagnosis():
                pending = [name for name, applied in await self.migration_status() if applied is None]
                problems = [] if pending else await self.check_schema()
        except MofaError:
            return schema_fallback(doing, detail)
        if pending:
            return PersistenceError(
                f"{doing}: the mofa schema is missing or out of date ({detail}); migrations "
                f"{', '.join(pending)} are pending: run `mofa db migrate` or `await store.migrate()`"
            )
        found = "; ".join(problems) if problems else detail
        return PersistenceError(
            f"{doing}: the schema was changed by hand after it was migrated ({found}); every migration "
            "is applied, so migrating again changes nothing: restore what is missing (as the migrations "
            "define it) or restore the database from a backup"
        )

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with store.transaction() as tx:`` — pass ``tx=tx`` to writes to group them."""

    # -- messages ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def save_message(self, message: Message, *, tx: Transaction | None = None) -> Message:
        """Insert ``message``; the database assigns the next ``seq`` of its session atomically and
        touches the session's update time. Returns the message with ``seq`` set.
        Raises NotFoundError when the session does not exist for ``message.tenant_id``."""

    @abc.abstractmethod
    async def save_messages(self, messages: Sequence[Message], *, tx: Transaction | None = None) -> list[Message]:
        """Insert several messages in one transaction, in order."""

    @abc.abstractmethod
    async def update_message(
        self,
        tenant_id: uuid.UUID,
        message_id: uuid.UUID,
        *,
        content: str | Unset = UNSET,
        status: MessageStatus | Unset = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        delta_ends: list[int] | Unset | None = UNSET,
        tx: Transaction | None = None,
    ) -> None:
        """Change a message in place (streaming checkpoints, final status). NotFoundError if absent."""

    @abc.abstractmethod
    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None: ...

    @abc.abstractmethod
    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        """All messages of a session by ``seq``."""

    @abc.abstractmethod
    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]: ...

    @abc.abstractmethod
    async def get_session_messages_after(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]:
        """A keyset page of the transcript: up to ``limit`` messages with ``seq > after_seq``, by seq (the next
        page starts after the last one's seq). A range scan of (session_id, seq): any page costs the same."""

    @abc.abstractmethod
    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]:
        """The last ``k`` messages by ``seq``, oldest first, read through the (session_id, seq) index."""

    @abc.abstractmethod
    async def delete_message(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool: ...

    @abc.abstractmethod
    async def delete_session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> int: ...

    @abc.abstractmethod
    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int: ...

    @abc.abstractmethod
    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        """Persist ``interrupted`` on the session's replies still ``streaming`` past the lease."""

    @abc.abstractmethod
    async def answer_interrupted_tool_calls(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        """Record an ``interrupted`` error result for every tool call of the session that has none after it
        and whose message was last written before the lease (its process is gone); the rows recorded, in
        seq order. Idempotent, and two processes doing it at once record each answer once."""

    # -- session leases (one turn per session; migration 0012) --------------------------------------
    @abc.abstractmethod
    async def claim_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, run_id: uuid.UUID, lease_seconds: float,
        *, tx: Transaction | None = None,
    ) -> bool:
        """Make ``run_id`` the session's one live turn for ``lease_seconds``, in one conditional statement:
        False when there is no such session; SessionBusyError when another run's lease is live."""

    @abc.abstractmethod
    async def release_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        """End ``run_id``'s claim on the session (nothing when another run holds it now)."""

    @abc.abstractmethod
    async def renew_session_leases(
        self, runs: Sequence[tuple[uuid.UUID, uuid.UUID]], lease_seconds: float
    ) -> set[uuid.UUID]:
        """Extend the leases of ``runs`` (tenant id, run id) in one statement (one per tenant under
        row-level security); the run ids that still hold their session."""

    @abc.abstractmethod
    async def sweep_expired_leases(self, older_than: float = 0.0) -> int:
        """Mark ``interrupted`` the replies still ``streaming`` on sessions whose lease ran out more than
        ``older_than`` seconds ago (their process is gone) and free those sessions; how many replies. Sees
        every tenant's rows only without row-level security (with it, the next turn or read does it)."""

    @abc.abstractmethod
    async def session_holder(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> uuid.UUID | None:
        """The run whose lease on the session is live, if any."""

    @abc.abstractmethod
    async def run_holds_session(self, tenant_id: uuid.UUID, user_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        """Whether run ``run_id`` of this tenant and user holds a session with a live lease."""

    # -- sessions ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_session(self, session: Session, *, tx: Transaction | None = None) -> Session:
        """Insert, or return the existing row with this id. A row with this id owned by another tenant
        or user raises TenantMismatchError and changes nothing."""

    @abc.abstractmethod
    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None: ...

    @abc.abstractmethod
    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]:
        """Most recently active first."""

    @abc.abstractmethod
    async def list_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, after: Cursor | None = None, limit: int = 50
    ) -> Page[Session]:
        """A keyset page of the user's sessions, most recently active first (by ``update_time``, then id):
        those after ``after`` (a previous page's ``next``). Every page costs what the first does, unlike
        :meth:`get_user_sessions`' ``offset`` (the database walks every row before it: O(offset)). A session
        active again after the first page was read moves to the front, and a later page does not show it."""

    @abc.abstractmethod
    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Transaction | None = None,
    ) -> Session:
        """Set the given fields and touch ``update_time`` (also when no field is given).
        NotFoundError when absent for this tenant."""

    @abc.abstractmethod
    async def record_session_settings(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        settings: SessionSettings,
        changes: Sequence[SettingsChange] = (),
        *,
        tx: Transaction | None = None,
    ) -> Session:
        """Set the session's settings and append ``changes`` to its ``settings_changes``, in one statement
        (appending, so a concurrent writer's changes are kept), and touch ``update_time``.
        NotFoundError when absent for this tenant."""

    @abc.abstractmethod
    async def delete_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool:
        """Delete the session, its messages and its api calls."""

    # -- api calls ---------------------------------------------------------------------------------
    @abc.abstractmethod
    async def save_api_call(self, call: LLMApiCall, *, tx: Transaction | None = None) -> LLMApiCall: ...

    @abc.abstractmethod
    async def save_api_calls(
        self, calls: Sequence[LLMApiCall], *, tx: Transaction | None = None
    ) -> list[LLMApiCall]: ...

    @abc.abstractmethod
    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None: ...

    @abc.abstractmethod
    async def get_api_call_for_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> LLMApiCall | None:
        """The api-call row that answered with message ``message_id`` (its ``response_message_id``), the
        newest if several; read through an index, whatever the session's length."""

    @abc.abstractmethod
    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        """Newest first, paginated by the filter's offset and limit."""

    @abc.abstractmethod
    async def list_api_calls(self, query: QueryFilter, *, after: Cursor | None = None) -> Page[LLMApiCall]:
        """A keyset page of ``query``'s calls, newest first (by ``create_time``, then id), ``query.limit`` of
        them, after ``after`` (a previous page's ``next``). ``query.offset`` must be 0 here."""

    @abc.abstractmethod
    async def usage_breakdown(self, query: QueryFilter, by: UsageKey) -> list[UsageGroup]:
        """``query``'s calls aggregated per agent, model, or hour/day/week (UTC; weeks start on Monday), in the
        database: one row a group, whatever the number of calls. Groups by time come oldest first, the
        others with the most calls first."""

    @abc.abstractmethod
    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        """Aggregates over every matching record (offset and limit are ignored)."""

    @abc.abstractmethod
    async def cleanup_old_records(
        self, before: datetime, *, tenant_id: uuid.UUID | None = None, batch_size: int = 5_000
    ) -> int:
        """Delete api-call records created before ``before``; return how many. The oldest go first, in
        transactions of at most ``batch_size`` rows found through an index on the time, so a large cleanup
        never holds locks long nor blocks turns (a failure keeps the batches already deleted)."""

    # -- providers ---------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_provider(self, provider: Provider) -> Provider:
        """ConflictError when the tenant already has a provider of that name."""

    @abc.abstractmethod
    async def update_provider(self, provider: Provider) -> Provider: ...

    @abc.abstractmethod
    async def delete_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        """ConflictError while an agent still uses it."""

    @abc.abstractmethod
    async def get_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None: ...

    @abc.abstractmethod
    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None: ...

    @abc.abstractmethod
    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]: ...

    @abc.abstractmethod
    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]: ...

    # -- agents ------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_agent(self, agent: Agent) -> Agent:
        """ConflictError when the tenant already has that agent_code; NotFoundError for an unknown provider."""

    @abc.abstractmethod
    async def update_agent(self, agent: Agent) -> Agent: ...

    @abc.abstractmethod
    async def delete_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool: ...

    @abc.abstractmethod
    async def get_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None: ...

    @abc.abstractmethod
    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None: ...

    @abc.abstractmethod
    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        """By agent_order, then code."""

    @abc.abstractmethod
    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]: ...

    async def get_agent_by_code_and_tenant_with_provider(
        self, tenant_id: uuid.UUID | str, code: str
    ) -> AgentConfig | None:
        """The agent with ``code`` in ``tenant_id`` and its provider, or None when either is missing."""
        tid = parse_uuid(tenant_id, "tenant_id")
        agent = await self.get_agent_by_code_and_tenant(tid, code)
        if agent is None:
            return None
        provider = await self.get_provider(tid, agent.provider_id)
        if provider is None:
            return None
        return AgentConfig(agent=agent, provider=provider)

    # -- api keys (mofa serve) -------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        """Insert a key row (its hash only). ConflictError when the id or the hash exists already."""

    @abc.abstractmethod
    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key row with this hash, revoked or not. Not tenant-scoped: the key is how a request's tenant
        is found."""

    @abc.abstractmethod
    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        """The tenant's keys, revoked ones included, newest first."""

    @abc.abstractmethod
    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        """Revoke the key now; False when the tenant has no such key or it was revoked already."""

    @abc.abstractmethod
    async def touch_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, used_at: datetime) -> None:
        """Record when the key was last used (no error when it is gone)."""

    @abc.abstractmethod
    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]:
        """The user's sessions whose id (its canonical text, with dashes) starts or ends with ``fragment``
        (see :func:`check_id_fragment`), most recently active first, at most ``limit``. Ids are uuid7:
        their start is the creation time, so sessions of one day share a long prefix while their end is
        random (what lists show as the short id)."""

    @abc.abstractmethod
    async def find_thread(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, links: Sequence[str], *,
        session_id: uuid.UUID | None = None,
    ) -> ThreadMatch | None:
        """The user's session (in this tenant; ``session_id``: only that one) whose last message has the
        latest of ``links`` (the request's history chain, ``_chain.chain_of``), and how many of the links it
        matched; None when no session ends with any of them. Ties (equal histories) go to the session written
        last. The user's messages without a link yet (new rows, rows from before migration 0010) get theirs
        first; a reply still streaming gets none, so its session matches nothing."""

    @abc.abstractmethod
    async def search_messages(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, *, limit: int = 20
    ) -> list[Message]:
        """The user's messages in this tenant (their ``tenant_id`` and ``user_id``, which the library writes as
        their session's) holding every word of ``text`` (whole words, any case; see :func:`search_words`), most
        recent first, at most ``limit``. Full-text indexed: FTS5 on SQLite, a GIN index on
        ``to_tsvector('simple', content)`` on PostgreSQL; a common word walks the user's messages newest first
        (index of 0011) and stops at ``limit``."""
