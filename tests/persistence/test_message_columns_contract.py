"""A message's delta offsets and request parameters, and a reply's api-call row by index: columns of their
own (migration 0008), on every store; and the persistence plugin writing them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from mofa_sdk.entities import LLMApiCall, Message, Session
from mofa_sdk.errors import ValidationError
from mofa_sdk.ids import utc_now
from mofa_sdk.llm import EventHandler, LLMAgentBuilder, ScriptedProvider, Turn
from mofa_sdk.persistence import PersistencePlugin

Store = Any


async def _session(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> Session:
    created: Session = await store.create_session(Session(tenant_id=tenant, user_id=user))
    return created


def _message(s: Session, **fields: Any) -> Message:
    return Message(session_id=s.id, tenant_id=s.tenant_id, user_id=s.user_id, **fields)


# -- delta_ends ------------------------------------------------------------------------------------
async def test_delta_ends_round_trip(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    reply = await store.save_message(_message(s, role="assistant", content="Hello!", delta_ends=[5, 6],
                                              metadata={"k": "v"}))  # fmt: skip
    plain = await store.save_message(_message(s, role="assistant", content="x"))
    found = await store.get_message(tenant, reply.id)
    assert found is not None and found.delta_ends == [5, 6] and found.metadata == {"k": "v"}
    other = await store.get_message(tenant, plain.id)
    assert other is not None and other.delta_ends is None
    assert [m.delta_ends for m in await store.get_session_messages(tenant, s.id)] == [[5, 6], None]
    assert [m.delta_ends for m in await store.get_last_messages(tenant, s.id, 1)] == [None]


async def test_update_message_sets_delta_ends_alone(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    reply = await store.save_message(_message(s, role="assistant", content="He", status="streaming",
                                              delta_ends=[2], metadata={"k": 1}))  # fmt: skip
    await store.update_message(tenant, reply.id, content="Hello", delta_ends=[2, 5])
    found = await store.get_message(tenant, reply.id)
    assert found is not None and (found.content, found.delta_ends, found.metadata) == ("Hello", [2, 5], {"k": 1})
    await store.update_message(tenant, reply.id, status="complete")  # not given: kept
    found = await store.get_message(tenant, reply.id)
    assert found is not None and found.delta_ends == [2, 5]
    await store.update_message(tenant, reply.id, delta_ends=None)
    found = await store.get_message(tenant, reply.id)
    assert found is not None and found.delta_ends is None


async def test_delta_ends_with_a_nul_in_the_text(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    # PostgreSQL rewrites a row whose text gains a NUL: the offsets go with it
    s = await _session(store, tenant, user)
    reply = await store.save_message(_message(s, role="assistant", content="a", delta_ends=[1]))
    await store.update_message(tenant, reply.id, content="a\x00b", delta_ends=[1, 3])
    found = await store.get_message(tenant, reply.id)
    assert found is not None and (found.content, found.delta_ends) == ("a\x00b", [1, 3])


@pytest.mark.parametrize("bad", [[-1], ["1"], [1.5], [True], "1,2", {"a": 1}])
async def test_bad_delta_ends_are_refused(store: Store, tenant: uuid.UUID, user: uuid.UUID, bad: Any) -> None:
    s = await _session(store, tenant, user)
    with pytest.raises(ValidationError):
        _message(s, role="assistant", content="x", delta_ends=bad)
    reply = await store.save_message(_message(s, role="assistant", content="x", delta_ends=[1]))
    with pytest.raises(ValidationError, match="delta_ends"):
        await store.update_message(tenant, reply.id, content="changed", delta_ends=bad)
    found = await store.get_message(tenant, reply.id)
    assert found is not None and (found.content, found.delta_ends) == ("x", [1])


# -- request_params --------------------------------------------------------------------------------
async def test_request_params_round_trip(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    params = {"model": "m", "temperature": 0.5, "metadata": {"k": "v"}, "input_ids": ["a"], "n": None,
              "instructions": "Be brief.\\n"}  # fmt: skip
    m = await store.save_message(_message(s, role="user", content="hi", request_params=params, metadata={"x": 1}))
    found = await store.get_message(tenant, m.id)
    assert found is not None and found.request_params == params and found.metadata == {"x": 1}
    [saved] = await store.save_messages([_message(s, role="user", content="more", request_params={"a": [1]})])
    again = await store.get_message(tenant, saved.id)
    assert again is not None and again.request_params == {"a": [1]}


async def test_bad_request_params_are_refused(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    with pytest.raises(ValidationError, match="request_params"):
        _message(s, role="user", content="x", request_params={"x": float("nan")})
    with pytest.raises(ValidationError):
        _message(s, role="user", content="x", request_params=[1])


# -- a reply's api call ----------------------------------------------------------------------------
def _call(s: Session, reply: uuid.UUID | None, **fields: Any) -> LLMApiCall:
    return LLMApiCall(**{"tenant_id": s.tenant_id, "session_id": s.id, "user_id": s.user_id,
                         "response_message_id": reply, "model_name": "m", "status": "success", **fields})


async def test_the_api_call_of_a_reply(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    reply = await store.save_message(_message(s, role="assistant", content="a"))
    assert await store.get_api_call_for_message(tenant, reply.id) is None
    # many calls in the session, one per reply: the one of this reply is found
    others = [_call(s, uuid.uuid4()) for _ in range(150)]
    await store.save_api_calls(others)
    now = utc_now()
    older = await store.save_api_call(_call(s, reply.id, create_time=now - timedelta(seconds=5), status="failed"))
    newer = await store.save_api_call(_call(s, reply.id, create_time=now))
    found = await store.get_api_call_for_message(tenant, reply.id)
    assert found == newer and found != older
    assert await store.get_api_call_for_message(tenant, others[0].response_message_id) == others[0]
    # scoped by tenant
    assert await store.get_api_call_for_message(uuid.uuid4(), reply.id) is None


# -- the plugin ------------------------------------------------------------------------------------
class _Params(EventHandler):
    """Runs before the plugin, as ``mofa serve``'s handler does: the request to keep with the user row."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    async def before_call(self, turn: Turn) -> None:
        turn.request_params = self.params


class _CountingStore:
    """Counts the store's message writes (a proxy: the plugin sees the same store)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes: list[tuple[str, uuid.UUID]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name in ("save_message", "save_messages", "update_message"):
            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.writes.append((name, args[1] if name == "update_message" else args[0].id))
                return await attr(*args, **kwargs)
            return counted
        return attr


async def test_the_plugin_writes_offsets_and_request_params(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    counting = _CountingStore(store)
    plugin = PersistencePlugin("p", counting, user, tenant, uuid.uuid4(), record_delta_offsets=True)  # type: ignore[arg-type]
    provider = ScriptedProvider([["Hel", "lo", " you"]])
    agent = await (
        LLMAgentBuilder().with_provider(provider).with_user(user).with_tenant(tenant)
        .with_event_handler(_Params({"model": "x", "input_ids": []})).with_persistence_plugin(plugin)
        .build_async()
    )  # fmt: skip
    assert await agent.chat("hi") == "Hello you"
    await agent.aclose()
    user_row, reply = await store.get_session_messages(tenant, agent.session_id)
    assert user_row.request_params == {"model": "x", "input_ids": []} and user_row.metadata == {}
    assert reply.delta_ends == [3, 5, 9] and reply.metadata == {} and reply.request_params is None
    # the request went in with the user row: one insert, no update of it afterwards
    assert [w for w in counting.writes if w[1] == user_row.id] == [("save_message", user_row.id)]
    call = await store.get_api_call_for_message(tenant, reply.id)
    assert call is not None and call.request_message_id == user_row.id


async def test_without_offsets_nothing_is_recorded(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    plugin = PersistencePlugin("p", store, user, tenant, uuid.uuid4())
    agent = await (
        LLMAgentBuilder().with_provider(ScriptedProvider([["a", "b"]])).with_user(user).with_tenant(tenant)
        .with_persistence_plugin(plugin).build_async()
    )  # fmt: skip
    await agent.chat("hi")
    await agent.aclose()
    user_row, reply = await store.get_session_messages(tenant, agent.session_id)
    assert user_row.request_params is None and reply.delta_ends is None
