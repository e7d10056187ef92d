"""One rule for every store: bounds, keys and ids taken alike at the entry points (issue 14, items 7, 8, 10).

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from mofa_sdk.entities import QueryFilter
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    ValidationError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Store
from tests.support.builders import agent, call, msg, new_session, provider, same

# -- one rule for every store: bounds, keys, ids (issue 14, items 7, 8 and 10) ------------------------
INT32_MAX = 2**31 - 1


async def test_last_messages_reads_any_k_up_to_the_64_bit_bound(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """A window of 5,000 rounds asks for 10,002 messages when a session resumes: every store answers
    (PostgreSQL refused anything above 10,000); beyond 2**63 - 1 every store says so (SQLite overflowed)."""
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(3)])
    for k in (10_002, 2**40, 2**63 - 1):
        assert [m.content for m in await store.get_last_messages(tenant, s.id, k)] == ["0", "1", "2"]
    for bad in (2**63, 2**64, -1, True, "3", 2.0):
        with pytest.raises(ConfigError, match="k must be an integer from 0 to 2"):
            await store.get_last_messages(tenant, s.id, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda s, p: call(s, prompt_tokens=INT32_MAX + 1), "prompt_tokens"),
        (lambda s, p: call(s, completion_tokens=2**63), "completion_tokens"),
        (lambda s, p: call(s, total_tokens=2**70), "total_tokens"),
        (lambda s, p: call(s, latency_ms=INT32_MAX + 1), "latency_ms"),
        (lambda s, p: call(s, time_to_first_token_ms=2**63), "time_to_first_token_ms"),
        (lambda s, p: call(s, price=1e10), "price"),
        (lambda s, p: call(s, price=float("inf")), "price"),
        (lambda s, p: call(s, tokens_per_second=float("inf")), "tokens_per_second"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=INT32_MAX + 1), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=-(2**31) - 1), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, agent_order=2**63), "agent_order"),
        (lambda s, p: agent(s.tenant_id, p.id, max_completion_tokens=2**63), "max_completion_tokens"),
        (lambda s, p: agent(s.tenant_id, p.id, context_limit=INT32_MAX + 1), "context_limit"),
        (lambda s, p: msg(s, seq=2**63), "seq"),
    ],
)
async def test_integers_beyond_the_narrowest_column_are_refused_by_every_store(
    store: Store, tenant: uuid.UUID, user: uuid.UUID, build: Any, field: str
) -> None:
    """PostgreSQL's integer columns hold 32 bits, SQLite's 64: a value is refused by the entity, before any
    store sees it, so none keeps what another cannot (SQLite raised a raw OverflowError from 2**63)."""
    s = await new_session(store, tenant, user)
    p = await store.create_provider(provider(tenant))
    with pytest.raises(ValidationError, match=field):
        build(s, p)


async def test_integers_at_the_bound_round_trip_on_every_store(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    c = call(s, prompt_tokens=INT32_MAX, completion_tokens=INT32_MAX, total_tokens=INT32_MAX,
             latency_ms=INT32_MAX, time_to_first_token_ms=INT32_MAX)  # fmt: skip
    await store.save_api_call(c)
    got = await store.get_api_call(tenant, c.id)
    assert got is not None and (got.prompt_tokens, got.latency_ms) == (INT32_MAX, INT32_MAX)
    p = await store.create_provider(provider(tenant))
    for code, order in (("low", -(2**31)), ("high", INT32_MAX)):
        a = await store.create_agent(
            agent(tenant, p.id, code, agent_order=order, max_completion_tokens=INT32_MAX, context_limit=INT32_MAX)
        )
        same(await store.get_agent(tenant, a.id), a)


async def test_look_alike_agent_codes_cannot_coexist(store: Store, tenant: uuid.UUID) -> None:
    """NFKC folds full-width and compatibility forms into one code; invisible and control characters and
    surrounding whitespace are refused, so no two agents of a tenant read the same."""
    p = await store.create_provider(provider(tenant))
    chat = await store.create_agent(agent(tenant, p.id, "chat"))
    assert agent(tenant, p.id, "ｃｈａｔ").agent_code == "chat"
    with pytest.raises(ConflictError):
        await store.create_agent(agent(tenant, p.id, "ｃｈａｔ"))
    for bad in ("chat\u200b", "c\u200dhat", "cha\u00adt", "ch\u2028at", "\u2066chat", "cha\u3164t", "chat\x1b"):
        with pytest.raises(ValidationError, match=r"agent_code must not contain invisible or control"):
            agent(tenant, p.id, bad)
    for bad in ("chat ", " chat", "chat\t", "chat\u3000"):
        with pytest.raises(ValidationError, match="agent_code must not start or end with whitespace"):
            agent(tenant, p.id, bad)
    with pytest.raises(ValidationError, match="agent_code"):
        await store.update_agent(chat.model_copy(update={"agent_code": "chat\u200b"}))
    assert [a.agent_code for a in await store.list_agents(tenant)] == ["chat"]
    # a lookup takes the code as it is stored: the full-width form finds the agent, an invisible one is refused
    found = await store.get_agent_by_code_and_tenant(tenant, "ｃｈａｔ")
    assert found is not None and found.id == chat.id
    with pytest.raises(ValidationError, match="agent_code"):
        await store.get_agent_by_code_and_tenant(tenant, "chat\u200b")
    # inner spaces and any script stay: a code is not forced into ASCII
    assert (await store.create_agent(agent(tenant, p.id, "客服 bot"))).agent_code == "客服 bot"


async def test_look_alike_provider_names_cannot_coexist(store: Store, tenant: uuid.UUID) -> None:
    await store.create_provider(provider(tenant, "openai"))
    with pytest.raises(ConflictError):
        await store.create_provider(provider(tenant, "ｏｐｅｎａｉ"))
    for bad in ("openai\u200b", "openai ", "\ufeffopenai"):
        with pytest.raises(ValidationError, match="provider_name"):
            provider(tenant, bad)
    found = await store.get_provider_by_name(tenant, "ｏｐｅｎａｉ")
    assert found is not None and found.provider_name == "openai"
    assert [x.provider_name for x in await store.list_providers(tenant)] == ["openai"]


async def test_agent_names_refuse_control_characters(store: Store, tenant: uuid.UUID) -> None:
    p = await store.create_provider(provider(tenant))
    with pytest.raises(ValidationError, match="agent_name must not contain control characters"):
        agent(tenant, p.id, agent_name="evil \x1b[2J name")
    # a display name keeps what people type: emoji sequences with joiners, inner spaces
    family = await store.create_agent(agent(tenant, p.id, "family", agent_name="Helper 👩\u200d👩\u200d👧"))
    assert (await store.get_agent(tenant, family.id)).agent_name == "Helper 👩\u200d👩\u200d👧"


async def test_lone_surrogates_in_lookups_and_keys_are_a_validation_error(
    store: Store, tenant: uuid.UUID
) -> None:
    """What a shell's $'\\xff' becomes in Python: every store refuses it the same way, raising no
    UnicodeEncodeError (SQLite and PostgreSQL did) and returning no None (the memory store did)."""
    bad = "\udcff"
    with pytest.raises(ValidationError, match="agent_code contains a character UTF-8 cannot encode"):
        await store.get_agent_by_code_and_tenant(tenant, bad)
    with pytest.raises(ValidationError, match="provider_name contains a character UTF-8 cannot encode"):
        await store.get_provider_by_name(tenant, f"p{bad}")
    with pytest.raises(ValidationError, match="agent_code"):
        await store.get_agent_by_code_and_tenant_with_provider(tenant, bad)
    with pytest.raises(ValidationError, match="model_name"):
        QueryFilter(tenant_id=tenant, model_name=f"gpt{bad}")
    with pytest.raises(ValidationError, match="model_name"):
        QueryFilter(tenant_id=tenant, model_name="gpt\x00")
    with pytest.raises(ValidationError, match="agent_code must be text"):
        await store.get_agent_by_code_and_tenant(tenant, 42)  # type: ignore[arg-type]
    secret = "sk-secret-\ud800-tail"
    with pytest.raises(ValidationError, match="api_key contains a character UTF-8 cannot encode") as info:
        provider(tenant, api_key=SecretStr(secret))
    assert "secret" not in str(info.value) and "tail" not in str(info.value)
    with pytest.raises(ValidationError, match="api_key must not contain NUL"):
        provider(tenant, api_key=SecretStr("sk-\x00"))
    assert await store.list_providers(tenant) == []


async def test_ids_given_as_strings_in_any_case_find_the_same_rows(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    """Every store takes ids through one gate: a UUID string, upper or lower case, is the UUID (the memory
    and SQLite stores found nothing with an uppercase string); a string that is no UUID is a ConfigError."""
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s, "hello"))
    c = call(s)
    await store.save_api_call(c)
    p = await store.create_provider(provider(tenant))
    a = await store.create_agent(agent(tenant, p.id))
    loose: Any = store  # ids as strings: what the annotations do not admit, every store takes
    T, S, U = str(tenant).upper(), str(s.id).upper(), str(user).upper()
    assert (await loose.get_session(T, S)).id == s.id
    assert (await loose.get_message(T, str(m.id).upper())).content == "hello"
    assert [x.id for x in await loose.get_session_messages(T, S)] == [m.id]
    assert [x.id for x in await loose.get_last_messages(T, S, 5)] == [m.id]
    assert [x.id for x in await loose.get_user_sessions(T, U)] == [s.id]
    assert (await loose.get_api_call(T, str(c.id).upper())).id == c.id
    assert (await loose.get_provider(T, str(p.id).upper())).id == p.id
    assert (await loose.get_agent(T, str(a.id).upper())).id == a.id
    assert (await loose.get_agent_by_code_and_tenant(T, "chat")).id == a.id
    assert await loose.count_session_messages(T, S) == 1
    await loose.update_message(T, str(m.id).upper(), content="changed")
    assert (await loose.update_session(T, S, title="t")).title == "t"
    assert await loose.delete_message(T, str(m.id).upper()) is True
    assert await loose.delete_agent(tenant_id=T, agent_id=str(a.id).upper()) is True
    assert await loose.delete_provider(T, str(p.id).upper()) is True
    assert await loose.cleanup_old_records(utc_now() + timedelta(days=1), tenant_id=T) == 1
    assert await loose.delete_session(T, S) is True
    bad_calls: tuple[Callable[[], Awaitable[Any]], ...] = (
        lambda: loose.get_session("not-a-uuid", s.id),
        lambda: loose.get_session(tenant, "not-a-uuid"),
        lambda: loose.get_agent_by_code_and_tenant(12, "chat"),
    )
    for bad_call in bad_calls:
        with pytest.raises(ConfigError, match=r"tenant_id|session_id"):
            await bad_call()
