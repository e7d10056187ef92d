"""The seam between the agent and persistence: one call mapping, one session opener, typed turn ids."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from mofa_sdk.cli._sessions import resolve_session
from mofa_sdk.errors import (
    NotFoundError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    TenantMismatchError,
)
from mofa_sdk.llm import EventHandler, LLMAgent, LLMAgentBuilder, ScriptedProvider, Turn, Usage
from mofa_sdk.persistence import LLMApiCall, PersistenceContext, PersistencePlugin, QueryFilter, Session, Store
from mofa_sdk.persistence._sessions import open_session, owned_session

AGENT = uuid.UUID("019bda9f-0000-7000-8000-00000000a5e0")
#: a lone surrogate: the stream layer repairs it and says so in the turn's notes
BROKEN = ["Half ", "an \ud800 answer"]
#: what a call row says about how the turn ended (timings differ from run to run)
COMPARED = (
    "status", "error_message", "error_code", "prompt_tokens", "completion_tokens", "total_tokens",
    "prompt_tokens_details", "completion_tokens_details", "tokens_estimated", "model_name",
)


def _plugin(store: Store, tenant: uuid.UUID, user: uuid.UUID, session: uuid.UUID | None = None) -> PersistencePlugin:
    return PersistencePlugin.from_store("seam", store, user, tenant, AGENT, session)


async def _automatic(store: Store, tenant: uuid.UUID, user: uuid.UUID, provider: ScriptedProvider) -> LLMApiCall:
    """The call row the plugin writes for one turn."""
    agent = await LLMAgentBuilder().with_provider(provider).with_persistence_plugin(
        _plugin(store, tenant, user)
    ).build_async()
    with contextlib.suppress(ProviderError):
        await agent.chat_stream("hi").text_async()
    (call,) = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=agent.session_id))
    await agent.aclose()
    return call


async def _manual(store: Store, tenant: uuid.UUID, user: uuid.UUID, provider: ScriptedProvider) -> LLMApiCall:
    """The call row ``PersistenceContext.save_api_call(stream=…)`` writes for the same turn."""
    ctx = await PersistenceContext.new(store, user, tenant, AGENT)
    agent = LLMAgentBuilder().with_provider(provider).build()
    await ctx.save_user_message("hi")
    stream = agent.chat_stream("hi")
    with contextlib.suppress(ProviderError):
        await stream.text_async()
    call_id = await ctx.save_api_call(model_name=agent.model, stream=stream)
    call = await store.get_api_call(tenant, call_id)
    assert call is not None
    return call


def _seen(call: LLMApiCall) -> dict[str, Any]:
    return {name: getattr(call, name) for name in COMPARED}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ProviderTimeoutError("the provider did not answer in 30s"), "timeout"),
        (RateLimitError("429 slow down"), "rate_limited"),
        (ProviderServerError("502 bad gateway"), "failed"),
    ],
)
async def test_a_provider_error_gives_the_same_call_row_both_ways(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, error: ProviderError, status: str
) -> None:
    def provider() -> ScriptedProvider:
        return ScriptedProvider([BROKEN], fail=error, fail_after=2, usage=Usage(4, 2, 6))

    automatic = await _automatic(store, tenant, user, provider())
    manual = await _manual(store, tenant, user, provider())
    assert _seen(manual) == _seen(automatic)
    assert automatic.status == status and automatic.error_code == error.code
    # the notes of the repaired text reach the row either way, after the error itself
    assert automatic.error_message is not None
    assert automatic.error_message.startswith(str(error))
    assert "provider output repaired: replaced 1 lone surrogate(s)" in automatic.error_message
    assert automatic.latency_ms is not None and manual.latency_ms is not None


async def test_a_repaired_clean_reply_is_a_success_marked_repaired_both_ways(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    automatic = await _automatic(store, tenant, user, ScriptedProvider([BROKEN], usage=Usage(4, 2, 6)))
    manual = await _manual(store, tenant, user, ScriptedProvider([BROKEN], usage=Usage(4, 2, 6)))
    assert _seen(manual) == _seen(automatic)
    assert (automatic.status, automatic.error_code) == ("success", "repaired")
    assert automatic.error_message == "provider output repaired: replaced 1 lone surrogate(s) by U+FFFD"


async def test_a_clean_reply_has_no_error_either_way(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    automatic = await _automatic(store, tenant, user, ScriptedProvider(["fine"], usage=Usage(1, 1, 2)))
    manual = await _manual(store, tenant, user, ScriptedProvider(["fine"], usage=Usage(1, 1, 2)))
    assert _seen(manual) == _seen(automatic)
    assert (automatic.status, automatic.error_message, automatic.error_code) == ("success", None, None)


async def test_every_entry_point_refuses_another_users_session_and_writes_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    theirs = await store.create_session(Session(tenant_id=tenant, user_id=uuid.uuid4()))
    before = await store.get_session(tenant, theirs.id)
    errors = []
    for attempt in (
        lambda: open_session(store, tenant, user, AGENT, theirs.id),
        lambda: PersistenceContext.from_session(store, user, tenant, AGENT, theirs.id),
        lambda: LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_persistence_plugin(
            _plugin(store, tenant, user, theirs.id)
        ).build_async(),
    ):
        with pytest.raises(TenantMismatchError) as caught:
            await attempt()
        errors.append(str(caught.value))
    assert len(set(errors)) == 1 and "belongs to another user" in errors[0]
    # the CLI and the service do not even say it exists
    assert await owned_session(store, tenant, user, theirs.id) is None
    assert await owned_session(store, tenant, theirs.user_id, theirs.id) == before
    with pytest.raises(NotFoundError, match="unknown session"):
        await resolve_session(store, tenant, user, str(theirs.id))
    assert await store.count_session_messages(tenant, theirs.id) == 0
    assert await store.get_user_sessions(tenant, user) == []
    assert (await store.get_session(tenant, theirs.id)) == before


async def test_open_session_creates_a_named_session_once_and_reopens_it(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    named = uuid.uuid4()
    created, new = await open_session(store, tenant, user, AGENT, named)
    again, new_again = await open_session(store, tenant, user, AGENT, named)
    assert (created.id, new, again.id, new_again) == (named, True, named, False)
    fresh, made = await open_session(store, tenant, user, None, None)
    assert made and fresh.id != named and fresh.agent_id is None
    # another tenant's id is refused by the store, nothing written
    with pytest.raises(TenantMismatchError):
        await open_session(store, uuid.uuid4(), user, AGENT, named)


class _NameTheReply(EventHandler):
    def __init__(self, reply_id: uuid.UUID) -> None:
        self.reply_id = reply_id

    async def before_call(self, turn: Turn) -> None:
        turn.reply_id = self.reply_id


class _Watch(EventHandler):
    def __init__(self) -> None:
        self.user_message_ids: list[uuid.UUID | None] = []
        self.state_keys: list[str] = []

    async def before_call(self, turn: Turn) -> None:
        self.user_message_ids.append(turn.user_message_id)

    async def after_reply(self, turn: Turn, result: Any) -> None:
        self.state_keys.extend(turn.state)


async def test_the_turn_carries_the_stored_ids_in_typed_fields(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    chosen = uuid.uuid4()
    watch = _Watch()
    agent: LLMAgent = await (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider(["named reply"]))
        .with_event_handler(_NameTheReply(chosen))
        .with_persistence_plugin(_plugin(store, tenant, user))
        .with_event_handler(watch)
        .build_async()
    )
    await agent.chat_stream("hi").text_async()
    rows = await store.get_session_messages(tenant, agent.session_id)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[1].id == chosen and rows[1].parent_message_id == rows[0].id
    assert watch.user_message_ids == [rows[0].id]
    # the ids are no string keys of turn.state: the plugin keeps only its own private entry there
    assert all(k.startswith("mofa_sdk.persistence") for k in watch.state_keys)
    assert len(watch.state_keys) == 1
    # the agent's history carries the stored ids too
    assert [m.id for m in agent.history] == [rows[0].id, chosen]
    await agent.aclose()


async def test_list_sessions_gives_session_infos(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    agent = await LLMAgentBuilder().with_provider(ScriptedProvider(["x"])).with_persistence_plugin(
        _plugin(store, tenant, user)
    ).build_async()
    (info,) = await agent.list_sessions()
    assert (info.id, info.tenant_id, info.user_id, info.agent_id, info.title) == (
        agent.session_id, tenant, user, AGENT, None
    )
    assert info.update_time is not None
    await agent.aclose()
