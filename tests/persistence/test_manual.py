"""Manual persistence with PersistenceContext, including the caller's own transactions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mofa_sdk.errors import ConfigError, TenantMismatchError
from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider, Usage
from mofa_sdk.persistence import PersistenceContext, Store

AGENT = uuid.UUID("019bda9f-0000-7000-8000-0000000000a1")


async def test_seed_flow_with_metadata_and_usage(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    ctx = await PersistenceContext.new(store, user, tenant, AGENT)
    agent = LLMAgentBuilder().with_provider(ScriptedProvider(["four"], usage=Usage(5, 1, 6))).build()
    user_msg_id = await ctx.save_user_message("2+2?", metadata={"channel": "web"})
    stream = agent.chat_stream("2+2?")
    full = ""
    async for text in stream:
        full += text
    assistant_msg_id = await ctx.save_assistant_message(full, metadata={"score": 0.9})
    call_id = await ctx.save_api_call(model_name=agent.model, stream=stream, response_message_id=assistant_msg_id)

    history = await ctx.get_history()
    assert [(m.id, m.role, m.content, m.metadata) for m in history] == [
        (user_msg_id, "user", "2+2?", {"channel": "web"}),
        (assistant_msg_id, "assistant", "four", {"score": 0.9}),
    ]
    assert history[1].parent_message_id == user_msg_id
    call = await store.get_api_call(tenant, call_id)
    assert call is not None and (call.status, call.total_tokens, call.request_message_id) == ("success", 6, user_msg_id)
    stats = await ctx.get_usage_stats()
    assert (stats.total_calls, stats.total_tokens) == (1, 6)
    assert [m.content for m in await ctx.get_history(limit=1)] == ["four"]


async def test_conditional_persistence_and_new_session(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    ctx = await PersistenceContext.new(store, user, tenant, AGENT)
    first = ctx.session_id
    await ctx.save_user_message("hello")
    reply = ""  # a reply that fails the check is not saved
    if reply.strip():
        await ctx.save_assistant_message(reply)
    second = await ctx.new_session()
    assert second != first and ctx.session_id == second
    await ctx.save_user_message("again")
    assert [m.content for m in await store.get_session_messages(tenant, first)] == ["hello"]
    assert [m.content for m in await store.get_session_messages(tenant, second)] == ["again"]


async def test_from_session_resumes_and_refuses_other_tenants(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    ctx = await PersistenceContext.new(store, user, tenant, AGENT)
    await ctx.save_user_message("one")
    again = await PersistenceContext.from_session(store, user, tenant, AGENT, str(ctx.session_id))
    await again.save_user_message("two")
    assert [m.seq for m in await again.get_history()] == [1, 2]
    other_tenant = uuid.uuid4()
    with pytest.raises(TenantMismatchError):
        await PersistenceContext.from_session(store, user, other_tenant, AGENT, ctx.session_id)
    with pytest.raises(TenantMismatchError):
        await PersistenceContext.from_session(store, uuid.uuid4(), tenant, AGENT, ctx.session_id)
    assert await store.get_session(other_tenant, ctx.session_id) is None
    assert await store.count_session_messages(tenant, ctx.session_id) == 2
    with pytest.raises(ConfigError, match="session_id must be a UUID"):
        await PersistenceContext.from_session(store, user, tenant, AGENT, "019bda9f-nope")


async def test_writes_with_tx_commit_and_roll_back_together(
    db_store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    ctx = await PersistenceContext.new(db_store, user, tenant, AGENT)
    async with db_store.transaction() as tx:
        await ctx.save_user_message("kept", tx=tx)
        await ctx.save_assistant_message("kept too", tx=tx)
    with pytest.raises(RuntimeError, match="caller failed"):
        async with db_store.transaction() as tx:
            await ctx.save_user_message("dropped", tx=tx)
            await ctx.save_api_call(model_name="m", tx=tx)
            raise RuntimeError("caller failed")
    assert [m.content for m in await ctx.get_history()] == ["kept", "kept too"]
    assert (await ctx.get_usage_stats()).total_calls == 0


async def test_caller_owned_psycopg_transaction(pg_url: str, tenant: uuid.UUID, user: uuid.UUID) -> None:
    """A write given the caller's own psycopg connection joins the caller's transaction."""
    import psycopg

    from mofa_sdk.persistence import PostgresStore

    store = await PostgresStore.connect(pg_url)
    try:
        ctx = await PersistenceContext.new(store, user, tenant, AGENT)
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            await ctx.save_user_message("inside the caller's transaction", tx=conn)
            await conn.rollback()
            assert await ctx.get_history() == []
            await ctx.save_user_message("committed by the caller", tx=conn)
            await conn.commit()
        assert [m.content for m in await ctx.get_history()] == ["committed by the caller"]
    finally:
        await store.close()


async def test_bad_ids_are_config_errors(store: Store) -> Any:
    with pytest.raises(ConfigError, match="tenant_id must be a UUID"):
        await PersistenceContext.new(store, uuid.uuid4(), "tenant-1", AGENT)
