"""An agent wired to a store through the persistence plugin, and checks that the rows it leaves hang together
(the reliability suite: faults, kills, load)."""

from __future__ import annotations

import uuid
from typing import Any

from mofa_sdk.llm import LLMAgent, LLMAgentBuilder
from mofa_sdk.persistence import PersistencePlugin, QueryFilter, Store

__all__ = ["AGENT_ID", "assert_consistent", "build_agent", "calls", "rows"]

AGENT_ID = uuid.UUID("019bda9f-0000-7000-8000-0000000fa017")


async def build_agent(
    store: Store,
    tenant: uuid.UUID,
    user: uuid.UUID,
    provider: Any,
    *,
    session_id: uuid.UUID | None = None,
    checkpoint_interval: float = 1.0,
    window: int | None = 2,
) -> tuple[LLMAgent, PersistencePlugin]:
    plugin = PersistencePlugin.from_store(
        "persistence-plugin", store, user, tenant, AGENT_ID, session_id, checkpoint_interval=checkpoint_interval
    )
    agent = await (
        LLMAgentBuilder()
        .with_system_prompt("You are terse.")
        .with_provider(provider)
        .with_sliding_window(window)
        .with_persistence_plugin(plugin)
        .build_async()
    )
    return agent, plugin


async def rows(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[tuple[int, str, str, str]]:
    """``(seq, role, content, status)`` of every message of the session, by seq."""
    return [(m.seq, m.role, m.content, m.status) for m in await store.get_session_messages(tenant, session)]


async def calls(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[Any]:
    """The session's api-call records, oldest first."""
    found = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=session, limit=10_000))
    return list(reversed(found))


async def assert_consistent(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[Any]:
    """A session's rows hang together: seq 1..n with no gap, every reply answers the user message just
    before it, no reply still ``streaming``, every api call points at rows of this session."""
    msgs = await store.get_session_messages(tenant, session)
    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1)), "gap or duplicate in seq"
    by_id = {m.id: m for m in msgs}
    for i, m in enumerate(msgs):
        assert m.status != "streaming", f"reply {m.id} still streaming"
        if m.role == "assistant":
            assert i > 0 and msgs[i - 1].role == "user" and m.parent_message_id == msgs[i - 1].id
    for c in await calls(store, tenant, session):
        assert c.request_message_id in by_id, "api call without its request message"
        if c.response_message_id is not None:
            assert c.response_message_id in by_id, "api call pointing at a missing reply"
    return msgs
