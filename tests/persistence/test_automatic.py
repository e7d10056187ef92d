"""Automatic persistence: what is saved when (DESIGN §3), on every store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from mofa_sdk.errors import (
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    TenantMismatchError,
)
from mofa_sdk.llm import ChatMessage, ChatParams, LLMAgent, ScriptedProvider, Usage
from mofa_sdk.persistence import PersistencePlugin, QueryFilter, Store
from tests.support.rows import AGENT_ID, build_agent


async def build(
    store: Store,
    tenant: uuid.UUID,
    user: uuid.UUID,
    provider: Any,
    *,
    session_id: uuid.UUID | None = None,
    window: int | None = 2,
    checkpoint_interval: float = 1.0,
) -> LLMAgent:
    agent, _ = await build_agent(store, tenant, user, provider, session_id=session_id, window=window,
                                 checkpoint_interval=checkpoint_interval)
    return agent


async def rows(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in await store.get_session_messages(tenant, session)]


async def calls(store: Store, tenant: uuid.UUID, session: uuid.UUID) -> list[Any]:
    return list(reversed(await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=session))))


async def test_a_clean_turn_saves_user_reply_and_call(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    provider = ScriptedProvider(["Hello there friend"], usage=Usage(7, 3, 10))
    agent = await build(store, tenant, user, provider)
    before = (await store.get_session(tenant, agent.session_id)).update_time  # type: ignore[union-attr]
    stream = agent.chat_stream("hi")
    out = [t async for t in stream]
    assert "".join(out) == "Hello there friend"
    assert await rows(store, tenant, agent.session_id) == [
        ("user", "hi", "complete"),
        ("assistant", "Hello there friend", "complete"),
    ]
    msgs = await store.get_session_messages(tenant, agent.session_id)
    assert [m.seq for m in msgs] == [1, 2]
    assert msgs[1].parent_message_id == msgs[0].id
    (call,) = await calls(store, tenant, agent.session_id)
    assert call.status == "success"
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (7, 3, 10)
    assert call.tokens_estimated is False
    assert call.request_message_id == msgs[0].id and call.response_message_id == msgs[1].id
    assert call.latency_ms is not None and call.time_to_first_token_ms is not None
    assert call.tokens_per_second is not None and call.model_name == provider.default_model
    session = await store.get_session(tenant, agent.session_id)
    assert session is not None and session.update_time >= before
    await agent.aclose()


async def test_user_message_is_saved_before_the_provider_is_called(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    seen: list[list[tuple[str, str, str]]] = []

    class Spy(ScriptedProvider):
        def stream(self, messages: Sequence[ChatMessage], params: ChatParams) -> AsyncIterator[Any]:
            inner = super().stream(messages, params)

            async def gen() -> AsyncIterator[Any]:
                seen.append(await rows(store, tenant, sid))
                async for event in inner:
                    yield event

            return gen()

    agent = await build(store, tenant, user, Spy(["ok"]))
    sid = agent.session_id
    await agent.chat("question one")
    assert seen == [[("user", "question one", "complete")]]


@pytest.mark.parametrize(
    ("error", "call_status", "code"),
    [
        (ProviderServerError("upstream 500", status_code=500), "failed", "server_error"),
        (RateLimitError("slow down", status_code=429), "rate_limited", "rate_limited"),
        (ProviderTimeoutError("read timeout"), "timeout", "timeout"),
    ],
)
async def test_provider_error_before_first_token(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, error: Exception, call_status: str, code: str
) -> None:
    agent = await build(store, tenant, user, ScriptedProvider(["never"], fail=error, fail_after=0))  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        async for _ in agent.chat_stream("hi"):
            pass
    assert await rows(store, tenant, agent.session_id) == [("user", "hi", "complete")]
    (call,) = await calls(store, tenant, agent.session_id)
    assert (call.status, call.error_code, call.response_message_id) == (call_status, code, None)
    assert call.error_message


async def test_provider_error_mid_stream_keeps_the_partial_reply(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    provider = ScriptedProvider(["one two three four five"], fail=ProviderServerError("cut"), fail_after=3)
    agent = await build(store, tenant, user, provider)
    got: list[str] = []
    with pytest.raises(ProviderServerError) as info:
        async for t in agent.chat_stream("count"):
            got.append(t)
    assert "".join(got) == "one two three" == info.value.partial_text
    assert await rows(store, tenant, agent.session_id) == [
        ("user", "count", "complete"),
        ("assistant", "one two three", "error"),
    ]
    (call,) = await calls(store, tenant, agent.session_id)
    assert call.status == "failed" and call.error_code == "server_error"
    assert call.tokens_estimated is True and call.completion_tokens > 0


@pytest.mark.parametrize("how", ["break", "aclose", "cancel"])
async def test_stopping_early_saves_a_cancelled_partial(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, how: str
) -> None:
    provider = ScriptedProvider(["a b c d e f g h"], hang_after=3 if how == "cancel" else None, hang_on=[0])
    agent = await build(store, tenant, user, provider)
    if how == "break":
        async for t in agent.chat_stream("go"):
            if t.strip() == "b":
                break
        await asyncio.sleep(0.05)  # the abandoned generator is closed by asyncio's finalizer
        await agent.chat_stream("wait for the session lock").aclose()
    elif how == "aclose":
        stream = agent.chat_stream("go")
        it = aiter(stream)
        await anext(it)
        await anext(it)
        await stream.aclose()
    else:
        got: list[str] = []
        three = asyncio.Event()

        async def consume() -> None:
            async for t in agent.chat_stream("go"):
                got.append(t)
                if len(got) == 3:
                    three.set()

        task = asyncio.create_task(consume())
        await three.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stored = await rows(store, tenant, agent.session_id)
    expected = "a b c" if how == "cancel" else "a b"
    assert stored[:2] == [("user", "go", "complete"), ("assistant", expected, "cancelled")]
    call = (await calls(store, tenant, agent.session_id))[0]
    assert call.status == "cancelled"
    # the agent goes on after a cancellation
    assert await agent.chat("again") == "a b c d e f g h"


async def test_checkpoints_store_the_partial_reply_while_streaming(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    provider = ScriptedProvider([[f"w{i} " for i in range(30)]], delta_delay=0.01)
    agent = await build(store, tenant, user, provider, checkpoint_interval=0.05)
    mid: list[list[tuple[str, str, str]]] = []
    n = 0
    async for _ in agent.chat_stream("long"):
        n += 1
        if n == 20:
            mid.append(await rows(store, tenant, agent.session_id))
    (snapshot,) = mid
    assert snapshot[0] == ("user", "long", "complete")
    assert snapshot[1][0] == "assistant" and snapshot[1][2] == "streaming"
    assert snapshot[1][1].startswith("w0 w1 ") and len(snapshot[1][1]) < len("".join(f"w{i} " for i in range(30)))
    final = await rows(store, tenant, agent.session_id)
    assert final == [
        ("user", "long", "complete"),
        ("assistant", "".join(f"w{i} " for i in range(30)), "complete"),
    ]


async def test_resume_loads_what_the_user_saw_in_order(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    agent = await build(store, tenant, user, ScriptedProvider(["r1", "r2 partial reply", "r3"]), window=2)
    await agent.chat("q1")
    async for t in agent.chat_stream("q2"):
        if t.strip() == "partial":
            break
    await asyncio.sleep(0.05)
    await agent.chat("q3")
    expected = [
        ("user", "q2"),
        ("assistant", "r2 partial"),
        ("user", "q3"),
        ("assistant", "r3"),
    ]
    assert [(m.role, m.content) for m in agent.history if m.role != "system"] == expected
    sid = agent.session_id
    await agent.aclose()

    provider = ScriptedProvider(["r4"])
    again = await build(store, tenant, user, provider, session_id=sid, window=2)
    assert again.session_id == sid
    assert [(m.role, m.content, m.status) for m in again.history if m.role != "system"] == [
        ("user", "q2", "complete"),
        ("assistant", "r2 partial", "cancelled"),
        ("user", "q3", "complete"),
        ("assistant", "r3", "complete"),
    ]
    await again.chat("q4")
    sent = [(m.role, m.content) for m in provider.requests[0][0]]
    assert sent == [("system", "You are terse."), *expected, ("user", "q4")]
    assert [m.seq for m in await store.get_session_messages(tenant, sid)] == list(range(1, 9))


async def test_history_after_five_turns_with_window_two(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    agent = await build(store, tenant, user, ScriptedProvider([f"a{i}" for i in range(5)]), window=2)
    for i in range(5):
        await agent.chat(f"q{i}")
    assert [(m.role, m.content) for m in agent.history] == [
        ("system", "You are terse."),
        ("user", "q3"),
        ("assistant", "a3"),
        ("user", "q4"),
        ("assistant", "a4"),
    ]
    resumed = await build(store, tenant, user, ScriptedProvider(["x"]), session_id=agent.session_id, window=2)
    assert resumed.history == [m for m in agent.history]
    assert await store.count_session_messages(tenant, agent.session_id) == 10


async def test_unknown_session_id_is_created_with_that_id(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    sid = uuid.uuid4()
    agent = await build(store, tenant, user, ScriptedProvider(["ok"]), session_id=sid)
    assert agent.session_id == sid
    session = await store.get_session(tenant, sid)
    assert session is not None and session.user_id == user and session.agent_id == AGENT_ID


@pytest.mark.parametrize("other", ["tenant", "user"])
async def test_a_session_of_another_tenant_or_user_is_refused(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, other: str
) -> None:
    owner = await build(store, tenant, user, ScriptedProvider(["mine"]))
    await owner.chat("secret question")
    sid = owner.session_id
    t2, u2 = (uuid.uuid4(), user) if other == "tenant" else (tenant, uuid.uuid4())
    with pytest.raises(TenantMismatchError):
        await build(store, t2, u2, ScriptedProvider(["x"]), session_id=sid)
    assert await store.get_session(t2, sid) is None or other == "user"
    assert await rows(store, tenant, sid) == [
        ("user", "secret question", "complete"),
        ("assistant", "mine", "complete"),
    ]
    session = await store.get_session(tenant, sid)
    assert session is not None and session.user_id == user
    assert await store.get_user_sessions(t2, u2) == []


async def test_plugin_rows_appear_through_quick_helper(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original's quick helper never attached the plugin; here a quick agent leaves rows."""
    from mofa_sdk.persistence import SqliteStore, quick_agent_with_sqlite

    monkeypatch.setenv("OPENAI_API_KEY", "sk-unused-because-with_provider-replaces-it")
    for name in ("USER_ID", "TENANT_ID", "AGENT_ID", "SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "quick.db"
    agent = await (
        quick_agent_with_sqlite("Be brief.", path)
        .with_provider(ScriptedProvider(["saved"]))
        .with_sliding_window(2)
        .build_async()
    )
    await agent.chat("hello")
    sid, tid = agent.session_id, agent.tenant_id
    await agent.aclose()
    store = await SqliteStore.connect(f"sqlite:///{path}")
    try:
        assert await rows(store, tid, sid) == [
            ("user", "hello", "complete"),
            ("assistant", "saved", "complete"),
        ]
    finally:
        await store.close()


async def test_quick_helpers_validate_ids_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mofa_sdk.errors import ConfigError
    from mofa_sdk.persistence import quick_agent_with_memory

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("SESSION_ID", "not-a-uuid")
    with pytest.raises(ConfigError, match="session_id must be a UUID"):
        quick_agent_with_memory("x")


async def test_a_pending_reply_whose_write_did_land_is_not_written_twice(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """The final write may commit and still report a failure (the connection died on the way back):
    flushing it again must neither collide nor duplicate."""
    from mofa_sdk.persistence import PendingReply

    agent = await build(store, tenant, user, ScriptedProvider(["landed"]))
    await agent.chat("q")
    plugin = agent._backend
    assert isinstance(plugin, PersistencePlugin)
    (_, reply) = await store.get_session_messages(tenant, agent.session_id)
    (call,) = await calls(store, tenant, agent.session_id)
    plugin.pending.append(PendingReply(tenant, agent.session_id, reply, False, call, uncertain=True))
    assert await plugin.flush() == 1
    assert await rows(store, tenant, agent.session_id) == [
        ("user", "q", "complete"),
        ("assistant", "landed", "complete"),
    ]
    assert len(await calls(store, tenant, agent.session_id)) == 1
