"""InMemoryStore: the store contract on plain dicts, for tests and throw-away sessions.

It keeps the same rules as the database stores (tenant scoping, uniqueness per tenant, seq per session,
cascades) so that code tested against it behaves the same on SQLite and PostgreSQL. It stores and returns
copies: mutating an entity you passed in or got back never changes what is stored.
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import SecretStr

from .._stats import percentile_cont
from ..entities import (
    Agent,
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
from ..errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    NotFoundError,
    TenantMismatchError,
)
from ..ids import as_utc, utc_now
from ._checks import (
    check_before,
    check_delta_ends,
    check_message_update,
    check_session_settings,
    check_session_update,
)
from ._local_tx import LocalTransaction, current, entered, joins
from ._secrets import decrypt_key, encrypt_key
from ._store import (
    UNSET,
    Store,
    Transaction,
    Unset,
    check_id_fragment,
    check_page,
    search_words,
    settle_status,
)

__all__ = ["InMemoryStore", "MemoryTransaction"]

_E = TypeVar("_E", Message, Session, LLMApiCall, Agent, Provider)


def matches(call: LLMApiCall, q: QueryFilter) -> bool:
    """Whether ``call`` is selected by ``q``: every given field must match; [start_time, end_time)."""
    return (
        call.tenant_id == q.tenant_id
        and (q.user_id is None or call.user_id == q.user_id)
        and (q.session_id is None or call.session_id == q.session_id)
        and (q.agent_id is None or call.agent_id == q.agent_id)
        and (q.status is None or call.status == q.status)
        and (q.model_name is None or call.model_name == q.model_name)
        and (q.start_time is None or call.create_time >= q.start_time)
        and (q.end_time is None or call.create_time < q.end_time)
    )


def statistics_of(calls: Sequence[LLMApiCall]) -> UsageStatistics:
    by_status: dict[str, int] = {}
    for c in calls:
        by_status[c.status] = by_status.get(c.status, 0) + 1
    latencies = [float(c.latency_ms) for c in calls if c.latency_ms is not None]
    ttfts = [float(c.time_to_first_token_ms) for c in calls if c.time_to_first_token_ms is not None]
    tps = [c.tokens_per_second for c in calls if c.tokens_per_second is not None]
    return UsageStatistics(
        total_calls=len(calls),
        calls_by_status=by_status,
        prompt_tokens=sum(c.prompt_tokens for c in calls),
        completion_tokens=sum(c.completion_tokens for c in calls),
        total_tokens=sum(c.total_tokens for c in calls),
        total_price=float(sum(c.price for c in calls if c.price is not None)),
        avg_latency_ms=sum(latencies) / len(latencies) if latencies else None,
        p50_latency_ms=percentile_cont(latencies, 0.5),
        p95_latency_ms=percentile_cont(latencies, 0.95),
        p50_time_to_first_token_ms=percentile_cont(ttfts, 0.5),
        p95_time_to_first_token_ms=percentile_cont(ttfts, 0.95),
        avg_tokens_per_second=sum(tps) / len(tps) if tps else None,
    )


@dataclass
class _State:
    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    last_seq: dict[uuid.UUID, int] = field(default_factory=dict)
    #: message ids of each session, in seq order
    by_session: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    messages: dict[uuid.UUID, Message] = field(default_factory=dict)
    calls: dict[uuid.UUID, LLMApiCall] = field(default_factory=dict)
    #: providers as stored: the api_key field is cleared and the (possibly encrypted) key kept beside it
    providers: dict[uuid.UUID, tuple[Provider, str | None]] = field(default_factory=dict)
    agents: dict[uuid.UUID, Agent] = field(default_factory=dict)

    def snapshot(self) -> _State:
        """A copy to restore on rollback. Shallow is enough: stored entities are replaced, never mutated."""
        return _State(
            sessions=dict(self.sessions),
            last_seq=dict(self.last_seq),
            by_session={k: list(v) for k, v in self.by_session.items()},
            messages=dict(self.messages),
            calls=dict(self.calls),
            providers=dict(self.providers),
            agents=dict(self.agents),
        )


class MemoryTransaction(LocalTransaction):
    """What ``InMemoryStore.transaction()`` yields; pass it as ``tx=``."""


def _copy(entity: _E) -> _E:
    return entity.model_copy(deep=True)


class InMemoryStore(Store):
    """Everything in process memory; gone when the process ends. ``migrate()`` is a no-op."""

    dialect = "memory"

    def __init__(self, *, streaming_lease_seconds: float = 5.0) -> None:
        self.streaming_lease_seconds = streaming_lease_seconds
        self._state = _State()
        self._lock = asyncio.Lock()
        self._closed = False
        self._created = utc_now()

    def __repr__(self) -> str:
        return f"<InMemoryStore sessions={len(self._state.sessions)} messages={len(self._state.messages)}>"

    async def close(self) -> None:
        self._closed = True

    # -- plumbing ----------------------------------------------------------------------------------
    def _current(self) -> MemoryTransaction | None:
        return current(self, MemoryTransaction)

    def _joins(self, tx: Transaction | None) -> bool:
        """True when the write runs inside an open transaction (so it must not wait for the lock)."""
        joined = joins(self, tx, MemoryTransaction)
        if joined is not None:
            return joined
        raise ConfigError(
            f"tx= must be what this InMemoryStore's transaction() yields, got {type(tx).__name__}"
        )

    @asynccontextmanager
    async def _access(self, tx: Transaction | None = None) -> AsyncIterator[_State]:
        if self._closed:
            raise DatabaseUnavailableError("this InMemoryStore is closed")
        if self._joins(tx):
            yield self._state
            return
        # wait for another task's open transaction, so nobody sees (or loses) its uncommitted state
        async with self._lock:
            yield self._state

    def transaction(self) -> AbstractAsyncContextManager[MemoryTransaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[MemoryTransaction]:
        if self._closed:
            raise DatabaseUnavailableError("this InMemoryStore is closed")
        current = self._current()
        if current is not None:  # nested: behaves like a savepoint
            snapshot = self._state.snapshot()
            try:
                yield current
            except BaseException:
                self._state = snapshot
                raise
            return
        async with self._lock:
            snapshot = self._state.snapshot()
            with entered(MemoryTransaction(self)) as tx:
                try:
                    yield tx
                except BaseException:
                    self._state = snapshot
                    raise

    def _settle(self, m: Message) -> Message:
        return settle_status(_copy(m), self.streaming_lease_seconds)

    # -- schema ------------------------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        return []

    async def migration_status(self) -> list[tuple[str, datetime | None]]:
        from ._migrations import load_migrations

        return [(m.name, self._created) for m in load_migrations("sqlite")]

    # -- messages ----------------------------------------------------------------------------------
    def _insert_message(self, s: _State, m: Message) -> Message:
        session = s.sessions.get(m.session_id)
        if session is None or session.tenant_id != m.tenant_id:
            raise NotFoundError(f"cannot save message: session {m.session_id} does not exist for this tenant")
        if m.id in s.messages:
            raise ConflictError(f"cannot save message: a message with id {m.id} already exists")
        seq = s.last_seq[m.session_id] + 1
        stored = m.model_copy(deep=True, update={"seq": seq})
        s.last_seq[m.session_id] = seq
        s.sessions[m.session_id] = session.model_copy(update={"update_time": utc_now()})
        s.messages[m.id] = stored
        s.by_session[m.session_id].append(m.id)
        return stored

    async def save_message(self, message: Message, *, tx: Transaction | None = None) -> Message:
        async with self._access(tx) as s:
            return self._settle(self._insert_message(s, message))

    async def save_messages(self, messages: Sequence[Message], *, tx: Transaction | None = None) -> list[Message]:
        async with self._access(tx) as s:
            snapshot = s.snapshot()
            try:
                saved = [self._insert_message(s, m) for m in messages]
            except BaseException:
                self._state = snapshot
                raise
            return [self._settle(m) for m in saved]

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
        metadata = check_message_update(content, status, metadata)
        delta_ends = check_delta_ends(delta_ends)
        async with self._access(tx) as s:
            m = s.messages.get(message_id)
            if m is None or m.tenant_id != tenant_id:
                raise NotFoundError(f"cannot update message {message_id}: not found for this tenant")
            update: dict[str, Any] = {"update_time": utc_now()}
            if not isinstance(content, Unset):
                update["content"] = content
            if not isinstance(status, Unset):
                update["status"] = status
            if not isinstance(metadata, Unset):
                update["metadata"] = copy.deepcopy(metadata)
            if not isinstance(delta_ends, Unset):
                update["delta_ends"] = delta_ends
            s.messages[message_id] = m.model_copy(update=update)

    async def get_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        async with self._access() as s:
            m = s.messages.get(message_id)
            return self._settle(m) if m is not None and m.tenant_id == tenant_id else None

    def _session_messages(self, s: _State, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        session = s.sessions.get(session_id)
        if session is None or session.tenant_id != tenant_id:
            return []
        return [s.messages[i] for i in s.by_session[session_id]]

    async def get_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
        async with self._access() as s:
            return [self._settle(m) for m in self._session_messages(s, tenant_id, session_id)]

    async def get_session_messages_paginated(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, offset: int, limit: int
    ) -> list[Message]:
        check_page(offset, limit)
        async with self._access() as s:
            page = self._session_messages(s, tenant_id, session_id)[offset : offset + limit]
            return [self._settle(m) for m in page]

    async def get_last_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID, k: int) -> list[Message]:
        if k == 0:
            return []
        async with self._access() as s:
            return [self._settle(m) for m in self._session_messages(s, tenant_id, session_id)[-k:]]

    async def delete_message(
        self, tenant_id: uuid.UUID, message_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool:
        async with self._access(tx) as s:
            m = s.messages.get(message_id)
            if m is None or m.tenant_id != tenant_id:
                return False
            del s.messages[message_id]
            s.by_session[m.session_id].remove(message_id)
            return True

    async def delete_session_messages(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> int:
        async with self._access(tx) as s:
            ids = [m.id for m in self._session_messages(s, tenant_id, session_id)]
            for i in ids:
                del s.messages[i]
            if ids:
                s.by_session[session_id] = []
            return len(ids)

    async def count_session_messages(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        async with self._access() as s:
            return len(self._session_messages(s, tenant_id, session_id))

    async def mark_interrupted(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> int:
        cutoff = utc_now() - timedelta(seconds=self.streaming_lease_seconds)
        async with self._access() as s:
            n = 0
            now = utc_now()
            for m in self._session_messages(s, tenant_id, session_id):
                if m.status == "streaming" and m.update_time < cutoff:
                    s.messages[m.id] = m.model_copy(update={"status": "interrupted", "update_time": now})
                    n += 1
            return n

    # -- sessions ----------------------------------------------------------------------------------
    async def create_session(self, session: Session, *, tx: Transaction | None = None) -> Session:
        async with self._access(tx) as s:
            existing = s.sessions.get(session.id)
            if existing is not None:
                if existing.tenant_id != session.tenant_id or existing.user_id != session.user_id:
                    raise TenantMismatchError(f"session {session.id} belongs to another tenant or user")
                return _copy(existing)
            s.sessions[session.id] = _copy(session)
            s.last_seq[session.id] = 0
            s.by_session[session.id] = []
            return _copy(session)

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        async with self._access() as s:
            found = s.sessions.get(session_id)
            return _copy(found) if found is not None and found.tenant_id == tenant_id else None

    async def get_user_sessions(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, *, offset: int = 0, limit: int = 50
    ) -> list[Session]:
        check_page(offset, limit)
        async with self._access() as s:
            mine = [x for x in s.sessions.values() if x.tenant_id == tenant_id and x.user_id == user_id]
            mine.sort(key=lambda x: (x.update_time, x.id), reverse=True)
            return [_copy(x) for x in mine[offset : offset + limit]]

    async def update_session(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        title: str | Unset | None = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
        tx: Transaction | None = None,
    ) -> Session:
        metadata = check_session_update(tenant_id, title, metadata)
        async with self._access(tx) as s:
            found = s.sessions.get(session_id)
            if found is None or found.tenant_id != tenant_id:
                raise NotFoundError(f"cannot update session {session_id}: not found for this tenant")
            update: dict[str, Any] = {"update_time": utc_now()}
            if not isinstance(title, Unset):
                update["title"] = title
            if not isinstance(metadata, Unset):
                update["metadata"] = copy.deepcopy(metadata)
            s.sessions[session_id] = found.model_copy(update=update)
            return _copy(s.sessions[session_id])

    async def record_session_settings(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        settings: SessionSettings,
        changes: Sequence[SettingsChange] = (),
        *,
        tx: Transaction | None = None,
    ) -> Session:
        settings, added = check_session_settings(tenant_id, settings, changes)
        async with self._access(tx) as s:
            found = s.sessions.get(session_id)
            if found is None or found.tenant_id != tenant_id:
                raise NotFoundError(f"cannot record session settings {session_id}: not found for this tenant")
            changed = {"settings": settings, "settings_changes": found.settings_changes + added}
            s.sessions[session_id] = _copy(found.model_copy(update={"update_time": utc_now(), **changed}))
            return _copy(s.sessions[session_id])

    async def delete_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, *, tx: Transaction | None = None
    ) -> bool:
        async with self._access(tx) as s:
            found = s.sessions.get(session_id)
            if found is None or found.tenant_id != tenant_id:
                return False
            for i in s.by_session.pop(session_id):
                del s.messages[i]
            for cid in [c.id for c in s.calls.values() if c.session_id == session_id]:
                del s.calls[cid]
            del s.sessions[session_id]
            del s.last_seq[session_id]
            return True

    # -- api calls ---------------------------------------------------------------------------------
    def _insert_call(self, s: _State, call: LLMApiCall) -> LLMApiCall:
        session = s.sessions.get(call.session_id)
        if session is None or session.tenant_id != call.tenant_id:
            raise NotFoundError(
                f"cannot save api call: session {call.session_id} does not exist for this tenant"
            )
        if call.id in s.calls:
            raise ConflictError(f"cannot save api call: a record with id {call.id} already exists")
        s.calls[call.id] = _copy(call)
        return _copy(call)

    async def save_api_call(self, call: LLMApiCall, *, tx: Transaction | None = None) -> LLMApiCall:
        async with self._access(tx) as s:
            return self._insert_call(s, call)

    async def save_api_calls(self, calls: Sequence[LLMApiCall], *, tx: Transaction | None = None) -> list[LLMApiCall]:
        async with self._access(tx) as s:
            snapshot = s.snapshot()
            try:
                return [self._insert_call(s, c) for c in calls]
            except BaseException:
                self._state = snapshot
                raise

    async def get_api_call(self, tenant_id: uuid.UUID, call_id: uuid.UUID) -> LLMApiCall | None:
        async with self._access() as s:
            c = s.calls.get(call_id)
            return _copy(c) if c is not None and c.tenant_id == tenant_id else None

    async def get_api_call_for_message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> LLMApiCall | None:
        async with self._access() as s:
            mine = [c for c in s.calls.values() if c.tenant_id == tenant_id and c.response_message_id == message_id]
            return _copy(max(mine, key=lambda c: (c.create_time, c.id))) if mine else None

    async def query_api_calls(self, query: QueryFilter) -> list[LLMApiCall]:
        async with self._access() as s:
            found = [c for c in s.calls.values() if matches(c, query)]
            found.sort(key=lambda c: (c.create_time, c.id), reverse=True)
            return [_copy(c) for c in found[query.offset : query.offset + query.limit]]

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        async with self._access() as s:
            return statistics_of([c for c in s.calls.values() if matches(c, query)])

    async def cleanup_old_records(self, before: datetime, *, tenant_id: uuid.UUID | None = None) -> int:
        cutoff = check_before(before)
        async with self._access() as s:
            old = [
                c.id
                for c in s.calls.values()
                if c.create_time < cutoff and (tenant_id is None or c.tenant_id == tenant_id)
            ]
            for cid in old:
                del s.calls[cid]
            return len(old)

    # -- providers ---------------------------------------------------------------------------------
    def _provider_out(self, stored: tuple[Provider, str | None]) -> Provider:
        p, key = stored
        plain = decrypt_key(key, provider=p.provider_name)
        return p.model_copy(update={"api_key": SecretStr(plain) if plain is not None else None})

    def _provider_in(self, p: Provider, update_time: datetime | None = None) -> tuple[Provider, str | None]:
        key = encrypt_key(p.api_key.get_secret_value() if p.api_key is not None else None)
        update: dict[str, Any] = {"api_key": None}
        if update_time is not None:
            update["update_time"] = update_time
        return p.model_copy(update=update), key

    def _name_taken(self, s: _State, p: Provider) -> bool:
        return any(
            q.tenant_id == p.tenant_id and q.provider_name == p.provider_name and q.id != p.id
            for q, _ in s.providers.values()
        )

    async def create_provider(self, provider: Provider) -> Provider:
        async with self._access() as s:
            if provider.id in s.providers:
                raise ConflictError(f"cannot create provider: id {provider.id} already exists")
            if self._name_taken(s, provider):
                raise ConflictError(
                    f"cannot create provider: tenant already has one named {provider.provider_name!r}"
                )
            s.providers[provider.id] = self._provider_in(provider)
            return self._provider_out(s.providers[provider.id])

    async def update_provider(self, provider: Provider) -> Provider:
        async with self._access() as s:
            found = s.providers.get(provider.id)
            if found is None or found[0].tenant_id != provider.tenant_id:
                raise NotFoundError(f"cannot update provider {provider.id}: not found for this tenant")
            if self._name_taken(s, provider):
                raise ConflictError(
                    f"cannot update provider: tenant already has one named {provider.provider_name!r}"
                )
            stored, key = self._provider_in(provider, utc_now())
            s.providers[provider.id] = (stored.model_copy(update={"create_time": found[0].create_time}), key)
            return self._provider_out(s.providers[provider.id])

    async def delete_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        async with self._access() as s:
            found = s.providers.get(provider_id)
            if found is None or found[0].tenant_id != tenant_id:
                return False
            if any(a.provider_id == provider_id for a in s.agents.values()):
                raise ConflictError(f"cannot delete provider {provider_id}: an agent still uses it")
            del s.providers[provider_id]
            return True

    def _providers(self, s: _State, tenant_id: uuid.UUID, keep: Callable[[Provider], bool]) -> list[Provider]:
        found = [v for v in s.providers.values() if v[0].tenant_id == tenant_id and keep(v[0])]
        found.sort(key=lambda v: v[0].provider_name)
        return [self._provider_out(v) for v in found]

    async def get_provider(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> Provider | None:
        async with self._access() as s:
            found = s.providers.get(provider_id)
            return (
                self._provider_out(found) if found is not None and found[0].tenant_id == tenant_id else None
            )

    async def get_provider_by_name(self, tenant_id: uuid.UUID, name: str) -> Provider | None:
        async with self._access() as s:
            found = self._providers(s, tenant_id, lambda p: p.provider_name == name)
            return found[0] if found else None

    async def list_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        async with self._access() as s:
            return self._providers(s, tenant_id, lambda p: True)

    async def get_enabled_providers(self, tenant_id: uuid.UUID) -> list[Provider]:
        async with self._access() as s:
            return self._providers(s, tenant_id, lambda p: p.enabled)

    # -- agents ------------------------------------------------------------------------------------
    def _check_agent(self, s: _State, agent: Agent, action: str) -> None:
        provider = s.providers.get(agent.provider_id)
        if provider is None or provider[0].tenant_id != agent.tenant_id:
            raise NotFoundError(
                f"cannot {action} agent: provider {agent.provider_id} not found for this tenant"
            )
        if any(
            a.tenant_id == agent.tenant_id and a.agent_code == agent.agent_code and a.id != agent.id
            for a in s.agents.values()
        ):
            raise ConflictError(f"cannot {action} agent: tenant already has agent_code {agent.agent_code!r}")

    async def create_agent(self, agent: Agent) -> Agent:
        async with self._access() as s:
            if agent.id in s.agents:
                raise ConflictError(f"cannot create agent: id {agent.id} already exists")
            self._check_agent(s, agent, "create")
            s.agents[agent.id] = _copy(agent)
            return _copy(agent)

    async def update_agent(self, agent: Agent) -> Agent:
        async with self._access() as s:
            found = s.agents.get(agent.id)
            if found is None or found.tenant_id != agent.tenant_id:
                raise NotFoundError(f"cannot update agent {agent.id}: not found for this tenant")
            self._check_agent(s, agent, "update")
            s.agents[agent.id] = agent.model_copy(
                deep=True, update={"create_time": found.create_time, "update_time": utc_now()}
            )
            return _copy(s.agents[agent.id])

    async def delete_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
        async with self._access() as s:
            found = s.agents.get(agent_id)
            if found is None or found.tenant_id != tenant_id:
                return False
            del s.agents[agent_id]
            return True

    def _agents(self, s: _State, tenant_id: uuid.UUID, keep: Callable[[Agent], bool]) -> list[Agent]:
        found = [a for a in s.agents.values() if a.tenant_id == tenant_id and keep(a)]
        found.sort(key=lambda a: (a.agent_order, a.agent_code))
        return [_copy(a) for a in found]

    async def get_agent(self, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> Agent | None:
        async with self._access() as s:
            found = s.agents.get(agent_id)
            return _copy(found) if found is not None and found.tenant_id == tenant_id else None

    async def get_agent_by_code_and_tenant(self, tenant_id: uuid.UUID, code: str) -> Agent | None:
        async with self._access() as s:
            found = self._agents(s, tenant_id, lambda a: a.agent_code == code)
            return found[0] if found else None

    async def list_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        async with self._access() as s:
            return self._agents(s, tenant_id, lambda a: True)

    async def get_active_agents(self, tenant_id: uuid.UUID) -> list[Agent]:
        async with self._access() as s:
            return self._agents(s, tenant_id, lambda a: a.agent_status)

    # -- api keys --------------------------------------------------------------------------------------
    # Kept beside _State (not in it): keys are never written inside a transaction, so rollback never needs them.
    def _keys(self) -> dict[uuid.UUID, ApiKey]:
        if self._closed:
            raise DatabaseUnavailableError("this InMemoryStore is closed")
        keys: dict[uuid.UUID, ApiKey] | None = getattr(self, "_api_keys", None)
        if keys is None:
            keys = {}
            self._api_keys = keys
        return keys

    async def create_api_key(self, key: ApiKey) -> ApiKey:
        keys = self._keys()
        if key.id in keys or any(k.key_hash == key.key_hash for k in keys.values()):
            raise ConflictError(f"cannot create api key {key.id}: the id or the key exists already")
        keys[key.id] = key.model_copy(deep=True)
        return key.model_copy(deep=True)

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        found = [k for k in self._keys().values() if k.key_hash == key_hash]
        return found[0].model_copy(deep=True) if found else None

    async def list_api_keys(self, tenant_id: uuid.UUID) -> list[ApiKey]:
        found = [k for k in self._keys().values() if k.tenant_id == tenant_id]
        found.sort(key=lambda k: (k.create_time, k.id), reverse=True)
        return [k.model_copy(deep=True) for k in found]

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        keys = self._keys()
        found = keys.get(key_id)
        if found is None or found.tenant_id != tenant_id or found.revoked:
            return False
        keys[key_id] = found.model_copy(update={"revoke_time": utc_now()})
        return True

    async def touch_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, used_at: datetime) -> None:
        keys = self._keys()
        found = keys.get(key_id)
        if found is not None and found.tenant_id == tenant_id:
            keys[key_id] = found.model_copy(update={"last_used_time": as_utc(used_at)})

    async def find_sessions_by_id(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, fragment: str, *, limit: int = 10
    ) -> list[Session]:
        frag = check_id_fragment(fragment)
        check_page(0, limit)
        async with self._access() as s:
            found = [
                x for x in s.sessions.values()
                if x.tenant_id == tenant_id and x.user_id == user_id
                and (str(x.id).startswith(frag) or str(x.id).endswith(frag))
            ]  # fmt: skip
            found.sort(key=lambda x: (x.update_time, x.id), reverse=True)
            return [_copy(x) for x in found[:limit]]

    async def search_messages(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, text: str, *, limit: int = 20
    ) -> list[Message]:
        words = search_words(text)
        check_page(0, limit)
        async with self._access() as s:
            mine = {x.id for x in s.sessions.values() if x.tenant_id == tenant_id and x.user_id == user_id}
            found = [
                m for m in s.messages.values()
                if m.session_id in mine and m.tenant_id == tenant_id
                and set(words) <= set(re.findall(r"\w+", m.content.casefold()))
            ]  # fmt: skip
            found.sort(key=lambda m: (m.create_time, m.id), reverse=True)
            return [self._settle(m) for m in found[:limit]]
