"""SqlStore: every store operation written once in SQL, for the stores on a relational database.

A subclass brings its driver: connection scopes for reading and writing (joining the caller's ``tx=``, bound
to a tenant where the database enforces tenancy itself), running a statement, the migration lock, and the
mapping of its driver's errors to the project's. Its :class:`~._dialect.Dialect` says how values and the few
non-standard fragments are written. The statements here use named ``:name`` placeholders; only fixed table
and column names are ever interpolated, values are always bound.
"""

# ruff: noqa: S608  (SQL text here interpolates only fixed table, column and dialect fragments; values are bound)
from __future__ import annotations

import abc
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar, get_args

from .._stats import percentile_cont
from ..entities import (
    Agent,
    ApiCallStatus,
    ApiKey,
    Entity,
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
from ..errors import ConfigError, ConflictError, NotFoundError, SessionBusyError, TenantMismatchError, ValidationError
from ..ids import utc_now
from ..llm import INTERRUPTED_TOOL_RESULT
from ._args import agent_code, as_id, as_optional_id, checked, checked_all, count, provider_name
from ._chain import GENESIS, ThreadMatch, row_link
from ._checks import (
    check_before,
    check_delta_ends,
    check_message_update,
    check_session_settings,
    check_session_update,
)
from ._dialect import Dialect
from ._leases import (
    CLAIM_SQL,
    HOLDER_SQL,
    RELEASE_SQL,
    RUN_HOLDER_SQL,
    SWEEP_REPLIES_SQL,
    SWEEP_SESSIONS_SQL,
    in_list,
    live_sessions_sql,
    renew_sql,
)
from ._migrations import MIGRATIONS_TABLE, load_migrations, schema_problems, shape_of
from ._pages import Cursor, Page
from ._store import (
    UNSET,
    Store,
    Transaction,
    Unset,
    check_id_fragment,
    check_page,
    no_schema_diagnosis,
    search_words,
    settle_status,
)
from ._tables import AGENT, API_KEY, CALL, MESSAGE, PROVIDER, SESSION, Kind, Table, json_value
from ._usage import USAGE_KEYS, UsageGroup, UsageKey

__all__ = ["Doing", "KeyConflict", "Row", "SqlStore", "Words"]

E = TypeVar("E", bound=Entity)
Row = Sequence[Any]
#: opens one migration's transaction (under the lock that serialises migrating processes)
MigrationStep = Callable[[str], AbstractAsyncContextManager[Any]]


class Words:
    """Words formatted only when printed. What an operation is doing names its ids, every read and write
    carries it, and only an error message needs it."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def __str__(self) -> str:
        return self._make()


#: what an operation is doing, for its error messages
Doing = str | Words


class KeyConflict(ConflictError):
    """A unique or foreign key refused the row (not a lock or a concurrent change): the store words it."""


# The seq is handed out by bumping the session's counter: concurrent writers serialise on the session row and
# never collide; no session row for this tenant returns nothing, and nothing is inserted.
_RESERVE_SEQS = (
    "UPDATE entity_session SET last_seq = last_seq + :n, update_time = :now"
    " WHERE id = :session_id AND tenant_id = :tenant_id RETURNING last_seq"
)
#: locks the session row (as reserving a seq does) without changing it
_LOCK_SESSION = (
    "UPDATE entity_session SET last_seq = last_seq WHERE id = :session_id AND tenant_id = :tenant_id RETURNING id"
)
_BY_ID = "id = :id AND tenant_id = :tenant_id"
_IN_SESSION = "session_id = :session_id AND tenant_id = :tenant_id"
_SESSION_EXISTS = "EXISTS (SELECT 1 FROM entity_session WHERE id = :session_id AND tenant_id = :tenant_id)"
# an agent may only point at a provider of its own tenant
_PROVIDER_IN_TENANT = "EXISTS (SELECT 1 FROM entity_provider WHERE id = :provider_id AND tenant_id = :tenant_id)"
_NEWEST_FIRST = " ORDER BY create_time DESC, id DESC"
_RECENT_FIRST = " ORDER BY update_time DESC, id DESC"
# keyset conditions: row values, which an index on (…, time DESC, id DESC) answers as one range
_AFTER_RECENT = " AND (update_time, id) < (:after_time, :after_id)"
_AFTER_NEWEST = " AND (create_time, id) < (:after_time, :after_id)"
_STATUSES: tuple[str, ...] = get_args(ApiCallStatus)
#: a canonical uuid's text with every hex digit 0 / f: an id prefix padded with them bounds the ids it starts
_LOWEST_ID, _HIGHEST_ID = "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"


def _fits_id(fragment: str, at: int) -> bool:
    """``fragment`` can be the part of a canonical id starting at ``at`` (its dashes where an id has them)."""
    return all((c == "-") == (_LOWEST_ID[at + i] == "-") for i, c in enumerate(fragment))


#: messages' links of the history chain (``_chain``), a batch at a time; not their update time: the rows did
#: not change. VALUES columns are column1, column2 on both databases
_SET_LINKS = (
    "UPDATE entity_message SET chain_hash = v.column2 FROM (VALUES {values}) AS v"
    " WHERE entity_message.id = v.column1 AND entity_message.tenant_id = :tenant_id"
)
_LINKS_PER_WRITE = 400
#: where a row read with ``MESSAGE.cols()`` holds its session id
_MESSAGE_SESSION = list(MESSAGE.columns).index("session_id")
#: deleting a message unsets the links after it in its session (an edit unsets the row's own: sealing
#: relinks every row from the first unlinked one on)
_UNLINK_AFTER = (
    "UPDATE entity_message SET chain_hash = NULL WHERE tenant_id = :tenant_id AND session_id ="
    " (SELECT session_id FROM entity_message WHERE id = :id AND tenant_id = :tenant_id) AND seq >"
    " (SELECT seq FROM entity_message WHERE id = :id AND tenant_id = :tenant_id)"
)


def _checked_links(links: Sequence[str]) -> list[str]:
    if isinstance(links, str) or not all(isinstance(h, str) and len(h) == 64 for h in links):
        raise ConfigError("links must be a sequence of 64-digit chain hashes (see _chain.chain_of)")
    return list(links)


@functools.cache
def save_message_sql(d: Dialect) -> str:
    """Where ``d.seq_in_insert``: the statement saving one message and handing out its seq, in ``d``'s form."""
    return d.sql(
        f"WITH s AS ({_RESERVE_SEQS}) INSERT INTO entity_message ({MESSAGE.cols()})"
        f" SELECT {MESSAGE.values(d, {'seq': 's.last_seq'})} FROM s RETURNING seq"
    )


@functools.cache
def _unanswered_calls_sql(d: Dialect) -> str:
    """The session's tool calls with no result after them, whose message was last written before
    ``:cutoff``: (message id, user id, agent id, call id), in the order they were made."""
    return (
        f"SELECT m.id, m.user_id, m.agent_id, {d.tool_call_id} FROM entity_message m, {d.tool_calls_from}"
        " WHERE m.session_id = :session_id AND m.tenant_id = :tenant_id AND m.role = 'assistant'"
        " AND m.update_time < :cutoff AND NOT EXISTS (SELECT 1 FROM entity_message r"
        " WHERE r.session_id = m.session_id AND r.tenant_id = m.tenant_id AND r.role = 'tool'"
        f" AND r.seq > m.seq AND r.tool_call_id = {d.tool_call_id})"
        f" ORDER BY m.seq, {d.tool_call_order}"
    )


# the statements are few (some built from a where clause), and PostgreSQL's placeholders are a regex away
@functools.lru_cache(maxsize=1024)
def driver_sql(d: Dialect, text: str) -> str:
    """``text`` in ``d``'s form."""
    return d.sql(text)


@functools.cache
def insert_sql(table: Table[Any], d: Dialect) -> str:
    """Inserting a row of ``table``, in ``d``'s form."""
    return d.sql(f"INSERT INTO {table.name} ({table.cols()}) VALUES ({table.values(d)})")


@functools.cache
def insert_call_sql(d: Dialect) -> str:
    """Saving an api call, in ``d``'s form. INSERT … SELECT: the row goes in only when the session exists for
    the call's tenant."""
    return d.sql(f"INSERT INTO entity_api_call ({CALL.cols()}) SELECT {CALL.values(d)} WHERE {_SESSION_EXISTS}")


class SqlStore(Store):
    """The store contract over a few driver primitives; see the module docstring."""

    _dialect: ClassVar[Dialect]
    #: True when the database itself hides other tenants' rows (PostgreSQL row-level security)
    _hides_other_tenants = False

    # -- what a driver provides ------------------------------------------------------------------------
    @abc.abstractmethod
    def _reading(self, doing: Doing, tenant: uuid.UUID | None) -> AbstractAsyncContextManager[Any]:
        """A connection to read with; driver errors inside become mofa errors saying what was being ``doing``."""

    @abc.abstractmethod
    def _writing(
        self, doing: Doing, tx: Transaction | None, tenant: uuid.UUID | None, *, atomic: bool = False
    ) -> AbstractAsyncContextManager[Any]:
        """A connection to write with: ``tx`` when given (joining the caller's transaction), else the store's
        own. ``atomic``: the statements inside commit or roll back together."""

    @abc.abstractmethod
    async def _fetch(self, conn: Any, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """Run ``sql`` (in the driver's form); every row, columns in the order selected."""

    async def _fetch_planned(self, conn: Any, sql: str, params: Mapping[str, Any]) -> list[Row]:
        """Like :meth:`_fetch`, for a statement whose best plan depends on its values (a word's frequency, a
        tenant's size): a driver that prepares statements runs this one unprepared, planned for its values
        every time (a generic plan, cached after a few runs, assumes an average tenant and word)."""
        return await self._fetch(conn, sql, params)

    @abc.abstractmethod
    async def _execute(self, conn: Any, sql: str, params: Mapping[str, Any]) -> int:
        """Run ``sql`` (in the driver's form); how many rows it changed."""

    @abc.abstractmethod
    async def _execute_many(self, conn: Any, sql: str, params: Sequence[Mapping[str, Any]]) -> None: ...

    @abc.abstractmethod
    def _migrating(self) -> AbstractAsyncContextManager[MigrationStep]:
        """Scope of one ``migrate()`` run, yielding how to open each migration's locked transaction."""

    @abc.abstractmethod
    async def _run_script(self, conn: Any, script: str) -> None:
        """Run a migration script (several statements, no parameters)."""

    async def _rewrite_message(
        self,
        tenant_id: uuid.UUID,
        message_id: uuid.UUID,
        content: str | Unset,
        status: MessageStatus | Unset,
        metadata: dict[str, Any] | Unset,
        delta_ends: list[int] | Unset | None,
        tx: Transaction | None,
    ) -> None:
        """An update the dialect cannot write in place (``Dialect.needs_rewrite``)."""
        raise NotImplementedError(f"the {self._dialect.name} dialect rewrites no message")

    # -- helpers ---------------------------------------------------------------------------------------
    def _keys(self, **ids: uuid.UUID) -> dict[str, Any]:
        return {name: self._dialect.to_db("uuid", value) for name, value in ids.items()}

    def _now(self) -> Any:
        return self._dialect.to_db("time", utc_now())

    def _settle(self, m: Message) -> Message:
        return settle_status(m, self.streaming_lease_seconds)

    async def _rows(self, conn: Any, sql: str, params: Mapping[str, Any]) -> list[Row]:
        return await self._fetch(conn, driver_sql(self._dialect, sql), params)

    async def _select(
        self, table: Table[E], where: str, params: Mapping[str, Any], doing: Doing, tenant: uuid.UUID | None,
        tail: str = "",
    ) -> list[E]:  # fmt: skip
        async with self._reading(doing, tenant) as conn:
            rows = await self._rows(conn, f"SELECT {table.cols()} FROM {table.name} WHERE {where}{tail}", params)
        return [table.load(r, self._dialect) for r in rows]

    async def _of_tenant(self, table: Table[E], tenant_id: uuid.UUID, flag: str = "", **equal: Any) -> list[E]:
        """The tenant's rows of ``table`` whose columns ``equal`` the values given (and whose boolean column
        ``flag`` is true), in the table's list order."""
        where = "tenant_id = :tenant_id" + "".join(f" AND {c} = :{c}" for c in equal) + (flag and f" AND {flag}")
        params = {c: self._dialect.to_db(table.columns[c], v) for c, v in equal.items()}
        doing = Words(lambda: f"reading the {table.entity.__name__.lower()}s of tenant {tenant_id}")
        return await self._select(table, where, params | self._keys(tenant_id=tenant_id), doing, tenant_id, table.order)

    async def _change(
        self, sql: str, params: Mapping[str, Any], doing: Doing, tenant: uuid.UUID | None, tx: Transaction | None = None
    ) -> int:
        async with self._writing(doing, tx, tenant) as conn:
            return await self._execute(conn, driver_sql(self._dialect, sql), params)

    async def _returning(
        self,
        table: Table[E],
        sql: str,
        params: Mapping[str, Any],
        doing: Doing,
        tenant: uuid.UUID,
        tx: Transaction | None = None,
    ) -> E | None:
        """The row an ``UPDATE … RETURNING`` (its columns appended here) changed, if any."""
        async with self._writing(doing, tx, tenant) as conn:
            rows = await self._rows(conn, f"{sql} RETURNING {table.cols()}", params)
        return table.load(rows[0], self._dialect) if rows else None

    # -- schema ----------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction under the migration lock: a second
        process migrating at once waits, then finds them applied."""
        d = self._dialect
        applied: list[str] = []
        with no_schema_diagnosis():  # "run the migrations" is no advice while running them
            async with self._migrating() as step:
                for m in load_migrations(d.name):
                    async with step(f"applying migration {m.name}") as conn:
                        await self._execute(conn, d.migrations_ddl, {})
                        sql = f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE name = :name"
                        if await self._rows(conn, sql, {"name": m.name}):
                            continue
                        await self._run_script(conn, m.sql)
                        sql = f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (:name, :now)"
                        await self._execute(conn, d.sql(sql), {"name": m.name, "now": self._now()})
                    applied.append(m.name)
        return applied

    async def _applied(self) -> dict[str, datetime]:
        d = self._dialect
        async with self._reading("reading migration status", None) as conn:
            if not await self._rows(conn, d.table_exists_sql, {"name": MIGRATIONS_TABLE}):
                return {}
            rows = await self._rows(conn, f"SELECT name, applied_at FROM {MIGRATIONS_TABLE}", {})
        return {r[0]: d.from_db("time", r[1]) for r in rows}

    async def migration_status(self) -> list[tuple[str, datetime | None]]:
        applied = await self._applied()
        return [(m.name, applied.get(m.name)) for m in load_migrations(self._dialect.name)]

    async def check_schema(self) -> list[str]:
        async with self._reading("checking the schema", None) as conn:
            columns = await self._rows(conn, self._dialect.columns_sql, {})
            indexes = await self._rows(conn, self._dialect.indexes_sql, {})
        return schema_problems(shape_of([(r[0], r[1]) for r in columns], [r[0] for r in indexes]))

    # -- messages --------------------------------------------------------------------------------------
    async def _insert_messages(self, conn: Any, messages: Sequence[Message]) -> list[Message]:
        d, now = self._dialect, self._now()
        if len(messages) == 1:  # the hot path (every turn writes this way)
            m = messages[0]
            row = MESSAGE.params(m, d)  # a new dict: completed in place
            if d.seq_in_insert:  # one statement, one round trip
                row["n"], row["now"] = 1, now
                rows = await self._fetch(conn, save_message_sql(d), row)
            else:  # the seq, then the row: a many of one has no rowcount to read, so no cursor to close
                keys = {"session_id": row["session_id"], "tenant_id": row["tenant_id"]}
                rows = await self._rows(conn, _RESERVE_SEQS, {"n": 1, "now": now, **keys})
                if rows:
                    row["seq"] = rows[0][0]
                    await self._execute_many(conn, insert_sql(MESSAGE, d), [row])
            if not rows:
                raise _no_session("save message", m.session_id)
            return [self._settle(m.model_copy(update={"seq": int(rows[0][0])}))]
        groups: dict[tuple[uuid.UUID, uuid.UUID], list[int]] = {}
        for i, m in enumerate(messages):
            groups.setdefault((m.tenant_id, m.session_id), []).append(i)
        seqs = [0] * len(messages)
        for (tenant_id, session_id), idx in groups.items():
            # one UPDATE reserves the whole block of seqs for this session
            params = {"n": len(idx), "now": now, **self._keys(session_id=session_id, tenant_id=tenant_id)}
            rows = await self._rows(conn, _RESERVE_SEQS, params)
            if not rows:
                raise _no_session("save message", session_id)
            first = int(rows[0][0]) - len(idx) + 1
            for k, i in enumerate(idx):
                seqs[i] = first + k
        saved = [m.model_copy(update={"seq": s}) for m, s in zip(messages, seqs, strict=True)]
        await self._execute_many(conn, insert_sql(MESSAGE, d), [MESSAGE.params(m, d) for m in saved])
        return [self._settle(m) for m in saved]

    async def save_message(self, message: Message, *, tx: Transaction | None = None) -> Message:
        message = checked(message, Message, "message")
        doing = Words(lambda: f"saving message {message.id} in session {message.session_id}")
        atomic = not self._dialect.seq_in_insert
        with _reworded(Words(lambda: f"cannot save message: a message with id {message.id} already exists")):
            async with self._writing(doing, tx, message.tenant_id, atomic=atomic) as conn:
                return (await self._insert_messages(conn, [message]))[0]

    async def save_messages(self, messages: Sequence[Message], *, tx: Transaction | None = None) -> list[Message]:
        messages = checked_all(messages, Message, "messages")
        if not messages:
            return []
        doing = f"saving {len(messages)} messages"
        with _reworded("cannot save messages: a message with one of their ids already exists"):
            async with self._writing(doing, tx, messages[0].tenant_id, atomic=True) as conn:
                return await self._insert_messages(conn, messages)

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
        tenant_id, message_id = as_id(tenant_id, "tenant_id"), as_id(message_id, "message_id")
        metadata = check_message_update(content, status, metadata)
        delta_ends = check_delta_ends(delta_ends)
        d = self._dialect
        if d.needs_rewrite(content, metadata):
            await self._rewrite_message(tenant_id, message_id, content, status, metadata, delta_ends, tx)
            return
        sets, params = ["update_time = :now"], {"now": self._now(), **self._keys(id=message_id, tenant_id=tenant_id)}
        fields: tuple[tuple[str, Kind, Any], ...] = (("content", "text", content), ("metadata", "json", metadata))
        for column, kind, value in fields:
            if not isinstance(value, Unset):
                clause, values = d.message_set(column, kind, value)
                sets.append(clause)
                params.update(values)
        if not isinstance(content, Unset):
            sets.append("chain_hash = NULL")  # relinked (with the rows after it) when next threaded
        if not isinstance(status, Unset):
            sets.append("status = :status")
            params["status"] = status
        if not isinstance(delta_ends, Unset):
            sets.append(f"delta_ends = {d.placeholder('delta_ends', 'json')}")
            params["delta_ends"] = d.to_db("json", delta_ends)
        sql = f"UPDATE entity_message SET {', '.join(sets)} WHERE {_BY_ID}"
        if await self._change(sql, params, f"updating message {message_id}", tenant_id, tx) == 0:
            raise _missing("update message", message_id)

    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        tenant_id, message_id = as_id(tenant_id, "tenant_id"), as_id(message_id, "message_id")
        found = _one(await self._of_tenant(MESSAGE, tenant_id, id=message_id))
        return None if found is None else (await self._settled(tenant_id, [found]))[0]

    async def _session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, tail: str, **page: int
    ) -> list[Message]:
        params = self._keys(session_id=session_id, tenant_id=tenant_id) | page
        doing = Words(lambda: f"reading the messages of session {session_id}")
        return await self._settled(tenant_id, await self._select(MESSAGE, _IN_SESSION, params, doing, tenant_id, tail))

    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        return await self._session_messages(tenant_id, session_id, " ORDER BY seq")

    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        check_page(offset, limit)
        tail = " ORDER BY seq LIMIT :limit OFFSET :offset"
        return await self._session_messages(tenant_id, session_id, tail, limit=limit, offset=offset)

    async def get_session_messages_after(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        check_page(count(after_seq, "after_seq"), limit)
        # a range of entity_message_session_seq_key: the same plan for every value, so preparing it is right
        tail = " AND seq > :after_seq ORDER BY seq LIMIT :limit"
        return await self._session_messages(tenant_id, session_id, tail, after_seq=after_seq, limit=limit)

    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        k = count(k, "k")
        # any k up to 2**63 - 1: "the last k" is bounded by the session anyway.
        # A backward range scan of entity_message_session_seq_key: cost independent of the session's length.
        if k == 0:
            return []
        found = await self._session_messages(tenant_id, session_id, " ORDER BY seq DESC LIMIT :k", k=k)
        return found[::-1]

    async def delete_message(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool:
        tenant_id, message_id = as_id(tenant_id, "tenant_id"), as_id(message_id, "message_id")
        sql, params = f"DELETE FROM entity_message WHERE {_BY_ID}", self._keys(id=message_id, tenant_id=tenant_id)
        async with self._writing(f"deleting message {message_id}", tx, tenant_id, atomic=True) as conn:
            await self._execute(conn, driver_sql(self._dialect, _UNLINK_AFTER), params)
            return await self._execute(conn, driver_sql(self._dialect, sql), params) > 0

    async def delete_session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> int:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        sql, params = (
            f"DELETE FROM entity_message WHERE {_IN_SESSION}",
            self._keys(session_id=session_id, tenant_id=tenant_id),
        )
        return await self._change(sql, params, f"deleting the messages of session {session_id}", tenant_id, tx)

    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        async with self._reading(f"counting the messages of session {session_id}", tenant_id) as conn:
            rows = await self._rows(
                conn, f"SELECT count(*) FROM entity_message WHERE {_IN_SESSION}",
                self._keys(session_id=session_id, tenant_id=tenant_id),
            )  # fmt: skip
        return int(rows[0][0])

    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        now = utc_now()
        d = self._dialect
        params = self._keys(session_id=session_id, tenant_id=tenant_id) | {
            "now": d.to_db("time", now),
            "cutoff": d.to_db("time", now - timedelta(seconds=self.streaming_lease_seconds)),
        }
        sql = (
            "UPDATE entity_message SET status = 'interrupted', update_time = :now"
            f" WHERE {_IN_SESSION} AND status = 'streaming' AND update_time < :cutoff"
            # a live lease: the owner is alive, its provider is only silent (0012)
            " AND NOT EXISTS (SELECT 1 FROM entity_session WHERE id = :session_id AND tenant_id = :tenant_id"
            " AND active_until >= :now)"
        )
        return await self._change(sql, params, f"marking interrupted replies of session {session_id}", tenant_id)

    async def answer_interrupted_tool_calls(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        d = self._dialect
        now = utc_now()
        keys = self._keys(session_id=session_id, tenant_id=tenant_id)
        cutoff = d.to_db("time", now - timedelta(seconds=self.streaming_lease_seconds))
        doing = Words(lambda: f"recording the interrupted tool calls of session {session_id}")
        async with self._writing(doing, None, tenant_id, atomic=True) as conn:
            # The session row first: every writer of the session's messages locks it for a seq, so two
            # processes repairing at once take turns, and the second finds the first one's answers.
            if not await self._rows(conn, _LOCK_SESSION, keys):
                return []
            if await self._rows(conn, HOLDER_SQL, keys | {"now": d.to_db("time", now)}):
                return []  # a live turn holds the session: its tools may still be running (0012)
            found = await self._rows(conn, _unanswered_calls_sql(d), keys | {"cutoff": cutoff})
            if not found:
                return []
            # After everything stored so far: in the usual case (the process died running the tools) that is
            # right after the call's message and the results it got; the window puts each result after its
            # call wherever it was stored (``settle_tool_messages``).
            (last,) = await self._rows(conn, _RESERVE_SEQS, keys | {"n": len(found), "now": d.to_db("time", now)})
            first = int(last[0]) - len(found) + 1
            rows = [
                Message(
                    session_id=session_id, tenant_id=tenant_id, user_id=d.from_db("uuid", user),
                    agent_id=d.from_db("uuid", agent), parent_message_id=d.from_db("uuid", call_message),
                    seq=first + k, role="tool", content=INTERRUPTED_TOOL_RESULT, status="interrupted",
                    tool_call_id=call_id, is_error=True, create_time=now, update_time=now,
                )
                for k, (call_message, user, agent, call_id) in enumerate(found)
            ]  # fmt: skip
            await self._execute_many(conn, insert_sql(MESSAGE, d), [MESSAGE.params(m, d) for m in rows])
        return rows

    # -- session leases (_leases) -----------------------------------------------------------------------
    async def _settled(self, tenant_id: uuid.UUID, found: list[Message]) -> list[Message]:
        """Messages as read: a ``streaming`` reply past the lease reads ``interrupted`` unless its session's
        lease is live (one more read, only when such a reply is among them)."""
        settled = [self._settle(m) for m in found]
        stale = sorted({m.session_id for m, s in zip(found, settled, strict=True) if m.status != s.status})
        if not stale:
            return settled
        d = self._dialect
        ids, params = in_list("s", [d.to_db("uuid", i) for i in stale])
        async with self._reading("reading the leases of sessions", tenant_id) as conn:
            rows = await self._rows(conn, live_sessions_sql(ids),
                                    params | self._keys(tenant_id=tenant_id) | {"now": self._now()})
        live = {d.from_db("uuid", r[0]) for r in rows}
        return [m if m.session_id in live else s for m, s in zip(found, settled, strict=True)]

    async def claim_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, run_id: uuid.UUID, lease_seconds: float,
        *, tx: Transaction | None = None,
    ) -> bool:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        d, now = self._dialect, utc_now()
        params = self._keys(tenant_id=tenant_id, session_id=session_id, run_id=as_id(run_id, "run_id")) | {
            "now": d.to_db("time", now), "until": d.to_db("time", now + timedelta(seconds=lease_seconds))}
        async with self._writing(f"claiming session {session_id}", tx, tenant_id) as conn:
            if await self._rows(conn, CLAIM_SQL, params):
                return True
            held = await self._rows(conn, HOLDER_SQL, params)
        if not held:
            return False  # no such session (a holder whose lease ran out is claimed over above)
        raise SessionBusyError(f"session {session_id} has a reply streaming (run {d.from_db('uuid', held[0][0])})")

    async def release_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        params = self._keys(tenant_id=tenant_id, session_id=session_id, run_id=run_id)
        return await self._change(RELEASE_SQL, params, f"releasing session {session_id}", tenant_id) > 0

    async def renew_session_leases(
        self, runs: Sequence[tuple[uuid.UUID, uuid.UUID]], lease_seconds: float
    ) -> set[uuid.UUID]:
        d, now = self._dialect, utc_now()
        until = d.to_db("time", now + timedelta(seconds=lease_seconds))
        groups: dict[uuid.UUID | None, list[uuid.UUID]] = {}
        for tenant_id, run_id in runs:
            # row-level security shows a statement one tenant's rows: one statement per tenant then
            groups.setdefault(tenant_id if self._hides_other_tenants else None, []).append(run_id)
        renewed: set[uuid.UUID] = set()
        for tenant, ids in groups.items():
            listed, params = in_list("r", [d.to_db("uuid", i) for i in ids])
            if tenant is not None:
                params |= self._keys(tenant_id=tenant)
            async with self._writing(f"renewing {len(ids)} session leases", None, tenant) as conn:
                rows = await self._rows(conn, renew_sql(listed, per_tenant=tenant is not None),
                                        params | {"until": until})
            renewed |= {d.from_db("uuid", r[0]) for r in rows}
        return renewed

    async def sweep_expired_leases(self, older_than: float = 0.0) -> int:
        now = utc_now()
        params = {"now": self._dialect.to_db("time", now),
                  "cutoff": self._dialect.to_db("time", now - timedelta(seconds=older_than))}
        async with self._writing("marking the replies of expired leases interrupted", None, None, atomic=True) as conn:
            swept = await self._execute(conn, driver_sql(self._dialect, SWEEP_REPLIES_SQL), params)
            await self._execute(conn, driver_sql(self._dialect, SWEEP_SESSIONS_SQL), params)
        return swept

    async def session_holder(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> uuid.UUID | None:
        params = self._keys(tenant_id=tenant_id, session_id=session_id) | {"now": self._now()}
        async with self._reading(f"reading the lease of session {session_id}", tenant_id) as conn:
            rows = await self._rows(conn, HOLDER_SQL, params)
        return self._dialect.from_db("uuid", rows[0][0]) if rows else None

    async def run_holds_session(self, tenant_id: uuid.UUID, user_id: uuid.UUID, run_id: uuid.UUID) -> bool:
        params = self._keys(tenant_id=tenant_id, user_id=user_id, run_id=run_id) | {"now": self._now()}
        async with self._reading(f"looking for run {run_id}", tenant_id) as conn:
            return bool(await self._rows(conn, RUN_HOLDER_SQL, params))

    # -- sessions --------------------------------------------------------------------------------------
    async def create_session(self, session: Session, *, tx: Transaction | None = None) -> Session:
        session = checked(session, Session, "session")
        d = self._dialect
        params = SESSION.params(session, d)
        insert = (
            f"INSERT INTO entity_session ({SESSION.cols()}) VALUES ({SESSION.values(d)})"
            f" ON CONFLICT (id) DO NOTHING RETURNING {SESSION.cols()}"
        )
        doing = f"creating session {session.id}"
        async with self._writing(doing, tx, session.tenant_id) as conn:
            # insert-or-read; a concurrent delete between the two can only happen a bounded number of times
            for _ in range(3):
                rows = await self._rows(conn, insert, params) or await self._rows(
                    conn, f"SELECT {SESSION.cols()} FROM entity_session WHERE id = :id", {"id": params["id"]}
                )
                if not rows and self._hides_other_tenants:
                    # the id is taken (the insert did nothing) by a row this tenant is not allowed to see
                    raise TenantMismatchError(f"session {session.id} belongs to another tenant")
                if rows:
                    found = SESSION.load(rows[0], d)
                    if (found.tenant_id, found.user_id) != (session.tenant_id, session.user_id):
                        raise TenantMismatchError(f"session {session.id} belongs to another tenant or user")
                    return found
        raise ConflictError(f"{doing}: the row kept changing under concurrent writers; try again")

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        return _one(await self._of_tenant(SESSION, tenant_id, id=session_id))

    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]:
        tenant_id, user_id = as_id(tenant_id, "tenant_id"), as_id(user_id, "user_id")
        check_page(offset, limit)
        params = self._keys(tenant_id=tenant_id, user_id=user_id) | {"limit": limit, "offset": offset}
        return await self._select(
            SESSION, "tenant_id = :tenant_id AND user_id = :user_id", params,
            f"listing the sessions of user {user_id}", tenant_id, _RECENT_FIRST + " LIMIT :limit OFFSET :offset",
        )  # fmt: skip

    async def list_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, after: Cursor | None = None, limit: int = 50
    ) -> Page[Session]:
        tenant_id, user_id = as_id(tenant_id, "tenant_id"), as_id(user_id, "user_id")
        check_page(0, limit)
        after = checked_cursor(after)
        where = "tenant_id = :tenant_id AND user_id = :user_id"
        params = self._keys(tenant_id=tenant_id, user_id=user_id) | {"limit": limit + 1}
        if after is not None:
            where += _AFTER_RECENT
            params |= self._after(after)
        # entity_session_user_recent_id_idx (0011) matches the ORDER BY: every plan, generic or not, is a
        # short range scan, so the statement may be prepared
        found = await self._select(SESSION, where, params, f"listing the sessions of user {user_id}", tenant_id,
                                   _RECENT_FIRST + " LIMIT :limit")  # fmt: skip
        return _keyset(found, limit, lambda s: Cursor(s.update_time, s.id))

    def _after(self, after: Cursor) -> dict[str, Any]:
        d = self._dialect
        return {"after_time": d.to_db("time", after.time), "after_id": d.to_db("uuid", after.id)}

    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Transaction | None = None,
    ) -> Session:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        metadata = check_session_update(tenant_id, title, metadata)
        d = self._dialect
        sets, params = ["update_time = :now"], {"now": self._now(), **self._keys(id=session_id, tenant_id=tenant_id)}
        fields: tuple[tuple[str, Kind, Any], ...] = (("title", "text", title), ("metadata", "json", metadata))
        for column, kind, value in fields:
            if not isinstance(value, Unset):
                sets.append(f"{column} = {d.placeholder(column, kind)}")
                params[column] = d.to_db(kind, value)
        sql = f"UPDATE entity_session SET {', '.join(sets)} WHERE {_BY_ID}"
        found = await self._returning(SESSION, sql, params, f"updating session {session_id}", tenant_id, tx)
        if found is None:
            raise _missing("update session", session_id)
        return found

    async def record_session_settings(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        settings: SessionSettings,
        changes: Sequence[SettingsChange] = (),
        *,
        tx: Transaction | None = None,
    ) -> Session:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        settings, added = check_session_settings(tenant_id, settings, changes)
        d = self._dialect
        params = {"now": self._now(), **self._keys(id=session_id, tenant_id=tenant_id)}
        sets = ["update_time = :now", f"settings = {d.placeholder('settings', 'json')}"]
        params["settings"] = d.to_db("json", json_value(settings))
        if added:
            append, more = d.json_append("settings_changes", json_value(added))
            sets.append(append)
            params |= more
        sql = f"UPDATE entity_session SET {', '.join(sets)} WHERE {_BY_ID}"
        found = await self._returning(SESSION, sql, params, f"recording the settings of session {session_id}",
                                      tenant_id, tx)  # fmt: skip
        if found is None:
            raise _missing("record session settings", session_id)
        return found

    async def delete_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool:
        tenant_id, session_id = as_id(tenant_id, "tenant_id"), as_id(session_id, "session_id")
        # messages and api calls go with it (ON DELETE CASCADE)
        sql, params = f"DELETE FROM entity_session WHERE {_BY_ID}", self._keys(id=session_id, tenant_id=tenant_id)
        return await self._change(sql, params, f"deleting session {session_id}", tenant_id, tx) > 0

    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]:
        tenant_id, user_id = as_id(tenant_id, "tenant_id"), as_id(user_id, "user_id")
        frag = check_id_fragment(fragment)
        check_page(0, limit)
        d = self._dialect
        # By index, never by the id's text: a prefix is a range of ids (the fragment padded with 0s, then fs)
        # in entity_session_user_id_idx; a suffix is d.id_suffix_match (a range of the reversed text where
        # the dialect indexes it). A fragment whose dashes are not where an id has them matches nothing there.
        params = self._keys(tenant_id=tenant_id, user_id=user_id) | {
            "suffix": "%" + frag, "rlo": frag[::-1], "rhi": frag[::-1] + "~", "limit": limit,
        }  # fmt: skip
        matches = []
        if _fits_id(frag, 0):
            matches.append("id BETWEEN :lo AND :hi")
            lo, hi = frag + _LOWEST_ID[len(frag) :], frag + _HIGHEST_ID[len(frag) :]
            params |= {"lo": d.to_db("uuid", uuid.UUID(lo)), "hi": d.to_db("uuid", uuid.UUID(hi))}
        if _fits_id(frag, 36 - len(frag)):
            matches.append(f"({d.id_suffix_match})")
        if not matches:
            return []
        sql = (
            f"SELECT {SESSION.cols()} FROM entity_session WHERE tenant_id = :tenant_id AND user_id = :user_id"
            f" AND ({' OR '.join(matches)}){_RECENT_FIRST} LIMIT :limit"
        )
        async with self._reading(f"finding the sessions of user {user_id} by id", tenant_id) as conn:
            # planned for its values: a generic plan cannot tell how few ids a range holds, and may walk the
            # user's whole list filtering each id instead
            rows = await self._fetch_planned(conn, driver_sql(d, sql), params)
        return [SESSION.load(r, d) for r in rows]

    async def search_messages(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, *, limit: int = 20
    ) -> list[Message]:
        tenant_id, user_id = as_id(tenant_id, "tenant_id"), as_id(user_id, "user_id")
        d = self._dialect
        query = d.search_query(search_words(text))
        check_page(0, limit)
        # Scoped by the message's own tenant and user (the library writes a session's messages with the
        # session's user, and a session never changes user): the plan can start from the user's messages newest
        # first (entity_message_user_recent_idx, 0011) and stop at the limit when the word is common, or from
        # the full-text index when it is rare. A join to the session (as before 0011) made PostgreSQL expect
        # two rows, so it read every match of the word in the database, then sorted.
        sql = (
            f"SELECT {MESSAGE.cols('m.')} FROM {d.search_from} WHERE {d.search_match} AND m.tenant_id = :tenant_id"
            " AND m.user_id = :user_id ORDER BY m.create_time DESC, m.id DESC LIMIT :limit"
        )
        params = self._keys(tenant_id=tenant_id, user_id=user_id) | {"query": query, "limit": limit}
        async with self._analysing(f"searching the messages of user {user_id}", tenant_id, d.search_setup) as conn:
            # which of the two plans is right depends on the word: planned for it every time (a cached
            # generic plan looped over every session of the user, 3 to 10 s on 10 M messages)
            rows = await self._fetch_planned(conn, driver_sql(d, sql), params)
        return [self._settle(MESSAGE.load(r, d)) for r in rows]

    # -- history threading (migration 0010, ``_chain``) ------------------------------------------------
    async def find_thread(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, links: Sequence[str], *,
        session_id: uuid.UUID | None = None,
    ) -> ThreadMatch | None:
        tenant_id, user_id = as_id(tenant_id, "tenant_id"), as_id(user_id, "user_id")
        session_id = as_optional_id(session_id, "session_id")
        links = _checked_links(links)
        if not links:
            return None
        await self._seal_chains(tenant_id, user_id, session_id)
        named = {f"l{i}": h for i, h in enumerate(links)}
        only = " AND m.session_id = :session_id" if session_id is not None else ""
        sql = (
            "SELECT m.session_id, m.chain_hash FROM entity_message m WHERE m.tenant_id = :tenant_id"
            f" AND m.user_id = :user_id AND m.chain_hash IN ({', '.join(':' + k for k in named)}){only}"
            " AND NOT EXISTS (SELECT 1 FROM entity_message n WHERE n.session_id = m.session_id"
            " AND n.tenant_id = m.tenant_id AND n.seq > m.seq)"
            " AND EXISTS (SELECT 1 FROM entity_session s WHERE s.id = m.session_id AND s.tenant_id = m.tenant_id"
            " AND s.user_id = :user_id) ORDER BY m.update_time DESC, m.id DESC"
        )
        keys = self._keys(tenant_id=tenant_id, user_id=user_id)
        if session_id is not None:
            keys |= self._keys(session_id=session_id)
        async with self._reading(f"finding the session of a history of user {user_id}", tenant_id) as conn:
            rows = await self._rows(conn, sql, keys | named)
        position = {h: i for i, h in enumerate(links)}
        best: ThreadMatch | None = None
        for sid, link in rows:  # newest first: of equal matches the first found wins
            matched = position[link] + 1
            if best is None or matched > best.matched:
                best = ThreadMatch(self._dialect.from_db("uuid", sid), matched)
        return best

    async def _seal_chains(self, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID | None) -> None:
        """Give the user's messages without a link theirs, each session from its first such row on (an edited
        or deleted row unsets the links from it on). A reply still streaming stops its session. Two reads and
        one batched write however many sessions are open."""
        d = self._dialect
        keys = self._keys(tenant_id=tenant_id, user_id=user_id)
        only = ""
        if session_id is not None:
            keys |= self._keys(session_id=session_id)
            only = " AND session_id = :session_id"
        opened = (  # each session with unlinked rows, and its first one
            "SELECT session_id, min(seq) AS first FROM entity_message WHERE tenant_id = :tenant_id"
            f" AND user_id = :user_id AND chain_hash IS NULL{only} GROUP BY session_id"
        )
        doing = Words(lambda: f"linking the history chain of user {user_id}")
        async with self._reading(doing, tenant_id) as conn:
            before = await self._rows(
                conn, f"SELECT p.session_id, p.chain_hash FROM entity_message p JOIN ({opened}) o"
                " ON p.session_id = o.session_id WHERE p.tenant_id = :tenant_id AND p.seq = (SELECT max(q.seq)"
                " FROM entity_message q WHERE q.session_id = o.session_id AND q.tenant_id = :tenant_id"
                " AND q.seq < o.first)", keys,
            )  # fmt: skip
            rows = await self._rows(
                conn, f"SELECT {MESSAGE.cols('m.')} FROM entity_message m JOIN ({opened}) o"
                " ON m.session_id = o.session_id WHERE m.tenant_id = :tenant_id AND m.seq >= o.first"
                " ORDER BY m.session_id, m.seq", keys,
            )  # fmt: skip
        previous = {sid: link for sid, link in before if link is not None}
        stopped: set[uuid.UUID] = set()
        links: list[tuple[Any, str]] = []
        for raw in rows:
            row = self._settle(MESSAGE.load(raw, d))
            if row.session_id in stopped:
                continue
            if row.status == "streaming":
                stopped.add(row.session_id)
                continue
            key = raw[_MESSAGE_SESSION]
            link = row_link(previous.get(key, GENESIS), row, row.tool_calls, row.parts)
            previous[key] = link
            links.append((d.to_db("uuid", row.id), link))
        if not links:
            return
        async with self._writing(doing, None, tenant_id, atomic=True) as conn:
            for at in range(0, len(links), _LINKS_PER_WRITE):
                batch = links[at : at + _LINKS_PER_WRITE]
                values = ", ".join(f"({d.placeholder(f'i{n}', 'uuid')}, {d.placeholder(f'h{n}', 'text')})"
                                   for n in range(len(batch)))
                params: dict[str, Any] = {"tenant_id": keys["tenant_id"]}
                for n, (mid, link) in enumerate(batch):
                    params[f"i{n}"], params[f"h{n}"] = mid, link
                await self._execute(conn, driver_sql(d, _SET_LINKS.format(values=values)), params)

    # -- api calls -------------------------------------------------------------------------------------
    async def _insert_calls(self, calls: Sequence[LLMApiCall], tx: Transaction | None) -> list[LLMApiCall]:
        d = self._dialect
        sql = insert_call_sql(d)
        if len(calls) == 1:
            doing = Words(lambda: f"saving api call {calls[0].id}")
            taken: Doing = Words(lambda: f"cannot save api call: a record with id {calls[0].id} already exists")
        else:
            doing = Words(lambda: f"saving {len(calls)} api calls")
            taken = "cannot save api calls: a record with one of their ids already exists"
        with _reworded(taken):
            async with self._writing(doing, tx, calls[0].tenant_id, atomic=len(calls) > 1) as conn:
                for c in calls:
                    if await self._execute(conn, sql, CALL.params(c, d)) == 0:
                        raise _no_session("save api call", c.session_id)
        return list(calls)

    async def save_api_call(self, call: LLMApiCall, *, tx: Transaction | None = None) -> LLMApiCall:
        return (await self._insert_calls([checked(call, LLMApiCall, "call")], tx))[0]

    async def save_api_calls(self, calls: Sequence[LLMApiCall], *, tx: Transaction | None = None) -> list[LLMApiCall]:
        calls = checked_all(calls, LLMApiCall, "calls")
        return await self._insert_calls(calls, tx) if calls else []

    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None:
        tenant_id, call_id = as_id(tenant_id, "tenant_id"), as_id(call_id, "call_id")
        return _one(await self._of_tenant(CALL, tenant_id, id=call_id))

    async def get_api_call_for_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> LLMApiCall | None:
        tenant_id, message_id = as_id(tenant_id, "tenant_id"), as_id(message_id, "message_id")
        # through entity_api_call_response_idx (tenant_id, response_message_id)
        params = self._keys(tenant_id=tenant_id, message_id=message_id)
        where = "tenant_id = :tenant_id AND response_message_id = :message_id"
        doing = Words(lambda: f"reading the api call of message {message_id}")
        found = await self._select(CALL, where, params, doing, tenant_id, " ORDER BY create_time DESC, id DESC LIMIT 1")
        return _one(found)

    def _api_filter(self, q: QueryFilter) -> tuple[str, dict[str, Any]]:
        """The WHERE clause selecting ``q``'s calls: every given field matches; [start_time, end_time)."""
        d = self._dialect
        where, params = ["tenant_id = :tenant_id"], self._keys(tenant_id=q.tenant_id)
        for column in ("user_id", "session_id", "agent_id", "status", "model_name"):
            value = getattr(q, column)
            if value is not None:
                where.append(f"{column} = :{column}")
                params[column] = d.to_db(CALL.columns[column], value)
        for column, op, value in (("start_time", ">=", q.start_time), ("end_time", "<", q.end_time)):
            if value is not None:
                where.append(f"create_time {op} :{column}")
                params[column] = d.to_db("time", value)
        return " AND ".join(where), params

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        where, params = self._api_filter(query)
        params |= {"limit": query.limit, "offset": query.offset}
        tail = _NEWEST_FIRST + " LIMIT :limit OFFSET :offset"
        return await self._select(CALL, where, params, "querying api calls", query.tenant_id, tail)

    async def list_api_calls(self, query: QueryFilter, *, after: Cursor | None = None) -> Page[LLMApiCall]:
        query = checked(query, QueryFilter, "query")
        if query.offset:
            raise ValidationError("a keyset page starts after a cursor: query.offset must be 0 here")
        after = checked_cursor(after)
        where, params = self._api_filter(query)
        params["limit"] = query.limit + 1
        if after is not None:
            where += _AFTER_NEWEST
            params |= self._after(after)
        # (tenant_id, create_time) leads the usage indexes: a range scan whatever the cursor
        found = await self._select(CALL, where, params, "listing api calls", query.tenant_id,
                                   _NEWEST_FIRST + " LIMIT :limit")  # fmt: skip
        return _keyset(found, query.limit, lambda c: Cursor(c.create_time, c.id))

    @asynccontextmanager
    async def _analysing(self, doing: Doing, tenant: uuid.UUID, setup: str | None = None) -> AsyncIterator[Any]:
        """A connection for a statement reading many rows: in a transaction that first runs ``setup`` (default:
        the dialect's ``analytics_setup``) where there is one."""
        setup = self._dialect.analytics_setup if setup is None else setup
        if not setup:
            async with self._reading(doing, tenant) as conn:
                yield conn
            return
        async with self._writing(doing, None, tenant, atomic=True) as conn:
            await self._execute(conn, setup, {})
            yield conn

    async def usage_breakdown(self, query: QueryFilter, by: UsageKey) -> list[UsageGroup]:
        query = checked(query, QueryFilter, "query")
        if by not in USAGE_KEYS:
            raise ValidationError(f"usage is grouped by one of {', '.join(USAGE_KEYS)}, got {by!r}")
        d = self._dialect
        where, params = self._api_filter(query)
        key = {"agent": "agent_id", "model": "model_name"}.get(by) or d.time_bucket(by)
        order = " ORDER BY 1" if by in ("hour", "day", "week") else " ORDER BY 2 DESC, 1"
        sql = (
            f"SELECT {key}, count(*), count(*) FILTER (WHERE status NOT IN ('success', 'cancelled')),"
            " count(*) FILTER (WHERE status = 'cancelled'), coalesce(sum(total_tokens), 0)"
            f"{d.percentiles} FROM entity_api_call WHERE {where} GROUP BY {key}{order}"
        )
        async with self._analysing("aggregating usage", query.tenant_id) as conn:
            # planned for its values: a month of a big tenant and a day of a small one want different plans
            rows = await self._fetch_planned(conn, driver_sql(d, sql), params)
            if d.percentiles:
                percentiles = {r[0]: [None if v is None else float(v) for v in r[5:9]] for r in rows}
            else:  # in Python over two columns, as get_statistics does
                times = await self._rows(
                    conn, f"SELECT {key}, latency_ms, time_to_first_token_ms FROM entity_api_call WHERE {where}",
                    params,
                )  # fmt: skip
                per: dict[Any, tuple[list[float], list[float]]] = {}
                for k, lat, ttft in times:
                    lists = per.setdefault(k, ([], []))
                    if lat is not None:
                        lists[0].append(float(lat))
                    if ttft is not None:
                        lists[1].append(float(ttft))
                percentiles = {
                    k: [percentile_cont(v, p) for v in lists for p in (0.5, 0.95)] for k, lists in per.items()
                }
        out = []
        for r in rows:
            p = percentiles.get(r[0]) or [None] * 4
            named: dict[str, Any] = (
                {"agent_id": d.from_db("uuid", r[0])} if by == "agent"
                else {"model_name": r[0]} if by == "model"
                else {"start": d.from_db("time", r[0])}
            )  # fmt: skip
            out.append(UsageGroup(
                calls=int(r[1]), errors=int(r[2]), cancelled=int(r[3]), total_tokens=int(r[4]),
                p50_latency_ms=p[0], p95_latency_ms=p[1], p50_time_to_first_token_ms=p[2],
                p95_time_to_first_token_ms=p[3], **named,
            ))  # fmt: skip
        return out

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        where, params = self._api_filter(query)
        d = self._dialect
        # One pass over the period's rows (a status is one of five: counted with FILTER, not a second GROUP BY
        # pass), read from the covering usage indexes (0011), without JIT (d.analytics_setup).
        per_status = "".join(
            f", count(*) FILTER (WHERE status = '{s}')" for s in _STATUSES
        )  # fixed values from the entity's Literal
        async with self._analysing("computing usage statistics", query.tenant_id) as conn:
            (overall,) = await self._fetch_planned(
                conn,
                driver_sql(d,
                    "SELECT CAST(avg(latency_ms) AS DOUBLE PRECISION),"
                    " CAST(avg(tokens_per_second) AS DOUBLE PRECISION),"
                    " coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
                    f" coalesce(sum(total_tokens), 0), coalesce(sum(price), 0){per_status}{d.percentiles}"
                    f" FROM entity_api_call WHERE {where}"),
                params,
            )  # fmt: skip
            counts = dict(zip(_STATUSES, (int(c) for c in overall[6 : 6 + len(_STATUSES)]), strict=True))
            if d.percentiles:
                percentiles = [None if v is None else float(v) for v in overall[6 + len(_STATUSES) :]]
            else:  # in Python, over just two columns, interpolated as PostgreSQL's percentile_cont does
                times = await self._rows(
                    conn,
                    f"SELECT latency_ms, time_to_first_token_ms FROM entity_api_call WHERE {where}"
                    " AND (latency_ms IS NOT NULL OR time_to_first_token_ms IS NOT NULL)",
                    params,
                )
                latencies = [float(t[0]) for t in times if t[0] is not None]
                ttfts = [float(t[1]) for t in times if t[1] is not None]
                percentiles = [percentile_cont(v, p) for v in (latencies, ttfts) for p in (0.5, 0.95)]
        return UsageStatistics(
            total_calls=sum(counts.values()),
            calls_by_status={s: n for s, n in counts.items() if n},
            prompt_tokens=int(overall[2]),
            completion_tokens=int(overall[3]),
            total_tokens=int(overall[4]),
            total_price=float(overall[5]),
            avg_latency_ms=overall[0],
            p50_latency_ms=percentiles[0],
            p95_latency_ms=percentiles[1],
            p50_time_to_first_token_ms=percentiles[2],
            p95_time_to_first_token_ms=percentiles[3],
            avg_tokens_per_second=overall[1],
        )

    async def cleanup_old_records(
        self, before: datetime, *, tenant_id: uuid.UUID | None = None, batch_size: int = 5_000
    ) -> int:
        tenant_id = as_optional_id(tenant_id, "tenant_id")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= 1_000_000:
            raise ConfigError(f"batch_size must be an integer from 1 to 1000000, got {batch_size!r}")
        old = "create_time < :before"
        params: dict[str, Any] = {"before": self._dialect.to_db("time", check_before(before)), "batch": batch_size}
        if tenant_id is not None:
            old += " AND tenant_id = :tenant_id"
            params |= self._keys(tenant_id=tenant_id)
        # Bounded batches, each its own short transaction, found by an index on the time (entity_api_call_age_idx,
        # or the tenant's usage index): no lock is held long, and turns (which never touch old rows) go on.
        sql = f"DELETE FROM entity_api_call WHERE id IN (SELECT id FROM entity_api_call WHERE {old} LIMIT :batch)"
        deleted = 0
        while True:
            n = await self._change(sql, params, "deleting old api call records", tenant_id)
            deleted += n
            if n < batch_size:
                return deleted

    # -- providers -------------------------------------------------------------------------------------
    async def create_provider(self, provider: Provider) -> Provider:
        provider = checked(provider, Provider, "provider")
        p, d = provider, self._dialect
        taken = f"cannot create provider {p.provider_name!r}: the tenant already has one of that name, or id {p.id}"
        with _reworded(taken):
            async with self._writing(f"creating provider {p.provider_name!r}", None, p.tenant_id) as conn:
                await self._execute(conn, insert_sql(PROVIDER, d), PROVIDER.params(p, d))
        return p.model_copy(deep=True)

    async def update_provider(self, provider: Provider) -> Provider:
        provider = checked(provider, Provider, "provider")
        d = self._dialect
        updated = provider.model_copy(update={"update_time": utc_now()})
        sql = f"UPDATE entity_provider SET {PROVIDER.sets(d)} WHERE {_BY_ID}"
        with _reworded(f"cannot update provider: the tenant already has one named {provider.provider_name!r}"):
            found = await self._returning(
                PROVIDER, sql, PROVIDER.params(updated, d), f"updating provider {provider.id}", provider.tenant_id
            )
        if found is None:
            raise _missing("update provider", provider.id)
        return found

    async def delete_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        tenant_id, provider_id = as_id(tenant_id, "tenant_id"), as_id(provider_id, "provider_id")
        params = self._keys(id=provider_id, tenant_id=tenant_id)
        in_use = f"cannot delete provider {provider_id}: an agent still uses it"
        with _reworded(in_use):  # a KeyConflict: an agent made meanwhile
            async with self._writing(f"deleting provider {provider_id}", None, tenant_id, atomic=True) as conn:
                rows = await self._rows(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM entity_agent a"
                    " WHERE a.provider_id = p.id AND a.tenant_id = p.tenant_id)"
                    " FROM entity_provider p WHERE p.id = :id AND p.tenant_id = :tenant_id",
                    params,
                )
                if not rows:
                    return False
                if rows[0][0]:
                    raise ConflictError(in_use)
                sql = self._dialect.sql(f"DELETE FROM entity_provider WHERE {_BY_ID}")
                return await self._execute(conn, sql, params) > 0

    async def get_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        tenant_id, provider_id = as_id(tenant_id, "tenant_id"), as_id(provider_id, "provider_id")
        return _one(await self._of_tenant(PROVIDER, tenant_id, id=provider_id))

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        tenant_id, name = as_id(tenant_id, "tenant_id"), provider_name(name)
        return _one(await self._of_tenant(PROVIDER, tenant_id, provider_name=name))

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        tenant_id = as_id(tenant_id, "tenant_id")
        return await self._of_tenant(PROVIDER, tenant_id)

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        tenant_id = as_id(tenant_id, "tenant_id")
        return await self._of_tenant(PROVIDER, tenant_id, "enabled")

    # -- agents ----------------------------------------------------------------------------------------
    async def create_agent(self, agent: Agent) -> Agent:
        agent = checked(agent, Agent, "agent")
        a, d = agent, self._dialect
        sql = f"INSERT INTO entity_agent ({AGENT.cols()}) SELECT {AGENT.values(d)} WHERE {_PROVIDER_IN_TENANT}"
        with _reworded(f"cannot create agent: the tenant already has agent_code {a.agent_code!r}, or id {a.id}"):
            n = await self._change(sql, AGENT.params(a, d), f"creating agent {a.agent_code!r}", a.tenant_id)
        if n == 0:
            raise _no_provider("create", a)
        return a.model_copy(deep=True)

    async def update_agent(self, agent: Agent) -> Agent:
        agent = checked(agent, Agent, "agent")
        d = self._dialect
        updated = agent.model_copy(update={"update_time": utc_now()})
        sql = f"UPDATE entity_agent SET {AGENT.sets(d)} WHERE {_BY_ID} AND {_PROVIDER_IN_TENANT}"
        with _reworded(f"cannot update agent: the tenant already has agent_code {agent.agent_code!r}"):
            found = await self._returning(
                AGENT, sql, AGENT.params(updated, d), f"updating agent {agent.id}", agent.tenant_id
            )
        if found is None:
            if await self.get_agent(agent.tenant_id, agent.id) is None:
                raise _missing("update agent", agent.id)
            raise _no_provider("update", agent)
        return found

    async def delete_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
        tenant_id, agent_id = as_id(tenant_id, "tenant_id"), as_id(agent_id, "agent_id")
        sql, params = f"DELETE FROM entity_agent WHERE {_BY_ID}", self._keys(id=agent_id, tenant_id=tenant_id)
        return await self._change(sql, params, f"deleting agent {agent_id}", tenant_id) > 0

    async def get_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        tenant_id, agent_id = as_id(tenant_id, "tenant_id"), as_id(agent_id, "agent_id")
        return _one(await self._of_tenant(AGENT, tenant_id, id=agent_id))

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        tenant_id, code = as_id(tenant_id, "tenant_id"), agent_code(code)
        return _one(await self._of_tenant(AGENT, tenant_id, agent_code=code))

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        tenant_id = as_id(tenant_id, "tenant_id")
        return await self._of_tenant(AGENT, tenant_id)

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        tenant_id = as_id(tenant_id, "tenant_id")
        return await self._of_tenant(AGENT, tenant_id, "agent_status")

    # -- api keys (not tenant-bound: the key is how a request's tenant is found) -----------------------
    async def create_api_key(self, key: ApiKey) -> ApiKey:
        d = self._dialect
        with _reworded(f"cannot create api key {key.id}: the id or the key exists already"):
            async with self._writing(f"creating api key {key.id}", None, None) as conn:
                await self._execute(conn, insert_sql(API_KEY, d), API_KEY.params(key, d))
        return key.model_copy(deep=True)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = await self._select(API_KEY, "key_hash = :key_hash", {"key_hash": key_hash}, "reading api keys", None)
        return found[0] if found else None

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        tenant_id = as_id(tenant_id, "tenant_id")
        params = self._keys(tenant_id=tenant_id)
        return await self._select(API_KEY, "tenant_id = :tenant_id", params, "reading api keys", None, _NEWEST_FIRST)

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        tenant_id, key_id = as_id(tenant_id, "tenant_id"), as_id(key_id, "key_id")
        sql = f"UPDATE entity_api_key SET revoke_time = :now WHERE {_BY_ID} AND revoke_time IS NULL"
        params = self._keys(id=key_id, tenant_id=tenant_id) | {"now": self._now()}
        return await self._change(sql, params, f"revoking api key {key_id}", None) > 0

    async def touch_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, used_at: datetime) -> None:
        tenant_id, key_id = as_id(tenant_id, "tenant_id"), as_id(key_id, "key_id")
        sql = f"UPDATE entity_api_key SET last_used_time = :used_at WHERE {_BY_ID}"
        params = self._keys(id=key_id, tenant_id=tenant_id) | {"used_at": self._dialect.to_db("time", used_at)}
        await self._change(sql, params, f"recording the use of api key {key_id}", None)


class _reworded:  # lower case: it reads as a with-statement helper, like contextlib's
    """A key conflict said in the operation's own words (the driver's text stays the cause). The hot
    paths pass :class:`Words`: only a conflict needs them formatted. A class, not a generator: it wraps
    every write."""

    __slots__ = ("text",)

    def __init__(self, text: Doing) -> None:
        self.text = text

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, KeyConflict):
            raise ConflictError(str(self.text)) from exc.__cause__


def checked_cursor(after: Cursor | None) -> Cursor | None:
    if after is not None and not isinstance(after, Cursor):
        raise ConfigError(f"after must be a Cursor (a page's next) or None, got {type(after).__name__}")
    return after


def _keyset(found: list[E], limit: int, cursor: Callable[[E], Cursor]) -> Page[E]:
    """A page from ``limit + 1`` rows read: the extra row only says that there is a next page."""
    if len(found) > limit:
        return Page(found[:limit], cursor(found[limit - 1]))
    return Page(found, None)


def _one(found: list[E]) -> E | None:
    return found[0] if found else None


def _missing(action: str, row_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"cannot {action} {row_id}: not found for this tenant")


def _no_session(action: str, session_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"cannot {action}: session {session_id} does not exist for this tenant")


def _no_provider(action: str, agent: Agent) -> NotFoundError:
    return NotFoundError(
        f"cannot {action} agent {agent.agent_code!r}: provider {agent.provider_id} not found for this tenant"
    )
