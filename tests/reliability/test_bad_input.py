"""Bad input: each a clear mofa error naming the problem, and nothing half-written."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from mofa_sdk.entities import Agent, AgentConfig, Message, MessageRole, Provider, QueryFilter, Session
from mofa_sdk.errors import ConfigError, MofaError, NotFoundError, PersistenceError, ValidationError
from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistenceContext, PersistencePlugin, Store, connect_store
from tests.support.cli import Cli, one_error_line
from tests.support.rows import AGENT_ID, build_agent

SQLISH = [
    "'; DROP TABLE entity_message; --",
    "\" OR 1=1 --",
    "Robert'); DELETE FROM entity_session WHERE ('1'='1",
    "%s %(tenant_id)s {0} $1 ?",
    "\\x00 \\' E'\\\\'",
]


async def session_of(store: Store) -> Session:
    return await store.create_session(Session(tenant_id=uuid.uuid4(), user_id=uuid.uuid4()))


def message(s: Session, content: str = "hi", **kw: Any) -> Message:
    return Message(session_id=s.id, tenant_id=s.tenant_id, user_id=s.user_id, role="user", content=content, **kw)


async def state(store: Store, s: Session) -> Any:
    got = await store.get_session(s.tenant_id, s.id)
    return (got.model_dump() if got else None,
            [m.model_dump() for m in await store.get_session_messages(s.tenant_id, s.id)])


async def test_nul_is_kept_where_text_is_content_and_refused_in_names(store: Store) -> None:
    s = await session_of(store)
    saved = await store.save_message(message(s, "a\x00b", metadata={"k\x00": "v\x00"}))
    got = await store.get_message(s.tenant_id, saved.id)
    assert got is not None and got.content == "a\x00b" and got.metadata == {"k\x00": "v\x00"}
    await store.update_message(s.tenant_id, saved.id, content="c\x00d")
    assert (await store.get_message(s.tenant_id, saved.id)).content == "c\x00d"  # type: ignore[union-attr]
    before = await state(store, s)
    with pytest.raises(ValidationError, match="NUL"):
        await store.update_session(s.tenant_id, s.id, title="t\x00")
    with pytest.raises(ValidationError, match="NUL"):
        await store.update_session(s.tenant_id, s.id, metadata={"k": "\x00"})
    assert await state(store, s) == before
    t = uuid.uuid4()
    for build in (
        lambda: Session(tenant_id=t, user_id=t, title="x\x00"),
        lambda: Provider(tenant_id=t, provider_name="p\x00", provider_type="openai"),
        lambda: Provider(tenant_id=t, provider_name="p", provider_type="openai", api_base="http://x\x00"),
        lambda: Agent(tenant_id=t, agent_code="c\x00", agent_name="n", model_name="m", provider_id=t),
        lambda: Agent(tenant_id=t, agent_code="c", agent_name="n", model_name="m\x00", provider_id=t),
        lambda: Agent(tenant_id=t, agent_code="c", agent_name="n", model_name="m", provider_id=t, system_prompt="\x00"),
    ):
        with pytest.raises(ValidationError, match="NUL"):
            build()


@pytest.mark.parametrize("field", ["content", "metadata key", "metadata value", "title", "provider", "agent"])
async def test_lone_surrogates_are_refused_everywhere(store: Store, field: str) -> None:
    s = await session_of(store)
    before = await state(store, s)
    bad = "x\ud800y"
    with pytest.raises(ValidationError, match=r"UTF-8|JSON|unicode"):
        if field == "content":
            await store.update_message(s.tenant_id, (await store.save_message(message(s))).id, content=bad)
        elif field == "metadata key":
            await store.save_message(message(s, metadata={bad: 1}))
        elif field == "metadata value":
            await store.update_session(s.tenant_id, s.id, metadata={"k": bad})
        elif field == "title":
            await store.update_session(s.tenant_id, s.id, title=bad)
        elif field == "provider":
            await store.create_provider(Provider(tenant_id=s.tenant_id, provider_name=bad, provider_type="openai"))
        else:
            Agent(tenant_id=s.tenant_id, agent_code=bad, agent_name="n", model_name="m", provider_id=s.id)
    after = await state(store, s)
    if field == "content":  # the message saved for the update is there, unchanged
        assert after[1][0]["content"] == "hi" and after[1][1:] == []
    else:
        assert after == before
    assert await store.list_providers(s.tenant_id) == []


async def test_ten_megabyte_message_is_stored(store: Store) -> None:
    s = await session_of(store)
    big = ("0123456789abcdef" * 65536) * 10  # 10 MiB
    saved = await store.save_message(message(s, big))
    got = await store.get_message(s.tenant_id, saved.id)
    assert got is not None and len(got.content) == len(big) and got.content == big


async def test_empty_user_messages_are_refused(store: Store) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    agent, _ = await build_agent(store, tenant, user, ScriptedProvider(["x"]))
    for empty in ("", "   \n\t"):
        with pytest.raises(ConfigError, match="non-empty"):
            agent.chat_stream(empty)
    assert await store.get_session_messages(tenant, agent.session_id) == []


@pytest.mark.parametrize("what", ["session_id", "user_id", "tenant_id", "agent_id"])
async def test_non_uuid_ids_are_named(store: Store, what: str) -> None:
    ids: dict[str, Any] = {"session_id": uuid.uuid4(), "user_id": uuid.uuid4(), "tenant_id": uuid.uuid4(),
                           "agent_id": uuid.uuid4()}
    ids[what] = "not-a-uuid"
    with pytest.raises(ConfigError, match=what):
        PersistencePlugin.from_store("p", store, ids["user_id"], ids["tenant_id"], ids["agent_id"], ids["session_id"])
    with pytest.raises(ConfigError, match=what):
        await PersistenceContext.from_session(store, ids["user_id"], ids["tenant_id"], ids["agent_id"],
                                              ids["session_id"])
    if what in ("session_id", "tenant_id"):
        # every store parses ids at its entry (the memory and SQLite stores took them as typed and found nothing)
        with pytest.raises(ConfigError, match=what):
            await store.get_session(ids["tenant_id"], ids["session_id"])
    with pytest.raises(ConfigError):
        LLMAgentBuilder().with_session_id("nope")
    with pytest.raises(ValidationError, match=what):
        Message(**{**ids, "role": "user", "content": "x"})


async def test_unknown_agent_code_and_disabled_rows(store: Store) -> None:
    t = uuid.uuid4()
    assert await store.get_agent_by_code_and_tenant_with_provider(t, "no-such-agent") is None
    p = await store.create_provider(Provider(tenant_id=t, provider_name="p", provider_type="openai",
                                             api_key=SecretStr("sk-k")))
    a = await store.create_agent(Agent(tenant_id=t, agent_code="c", agent_name="n", model_name="m", provider_id=p.id))
    off_agent = AgentConfig(agent=a.model_copy(update={"agent_status": False}), provider=p)
    with pytest.raises(ConfigError, match=r"'c'.*disabled"):
        LLMAgentBuilder.from_agent_config(off_agent)
    off_provider = AgentConfig(agent=a, provider=p.model_copy(update={"enabled": False}))
    with pytest.raises(ConfigError, match=r"provider 'p'.*disabled"):
        LLMAgentBuilder.from_agent_config(off_provider)
    with pytest.raises(ValidationError, match="provider_type"):
        Provider(tenant_id=t, provider_name="q", provider_type="mystery-llm")
    odd = AgentConfig(agent=a, provider=Provider.model_construct(**{**p.model_dump(), "provider_type": "mystery"}))
    with pytest.raises(ConfigError, match="unknown provider_type 'mystery'"):
        LLMAgentBuilder.from_agent_config(odd)


async def test_sql_looking_text_is_just_text(store: Store) -> None:
    t = uuid.uuid4()
    for i, text in enumerate(SQLISH):
        s = await store.create_session(Session(tenant_id=t, user_id=uuid.uuid4(), title=text, metadata={text: text}))
        saved = await store.save_message(message(s, text, metadata={text: [text]}))
        got = await store.get_message(t, saved.id)
        assert got is not None and got.content == text and got.metadata == {text: [text]}
        assert (await store.get_session(t, s.id)).title == text  # type: ignore[union-attr]
        p = await store.create_provider(Provider(tenant_id=t, provider_name=f"{text}{i}", provider_type="openai",
                                                 api_base=text))
        a = await store.create_agent(Agent(tenant_id=t, agent_code=f"{text}{i}", agent_name=text, model_name=text,
                                           provider_id=p.id, system_prompt=text, custom_params={text: text}))
        assert (await store.get_agent_by_code_and_tenant(t, f"{text}{i}")) == a
        assert (await store.get_provider_by_name(t, f"{text}{i}")).api_base == text  # type: ignore[union-attr]
        assert await store.query_api_calls(QueryFilter(tenant_id=t, model_name=text)) == []
    assert len(await store.list_agents(t)) == len(SQLISH)


@pytest.mark.parametrize("metadata", [{"k": {1, 2}}, {"k": b"bytes"}, {"k": float("nan")}, {1: "int key"}])
async def test_non_json_metadata_is_refused(store: Store, metadata: Any) -> None:
    s = await session_of(store)
    saved = await store.save_message(message(s))
    before = await state(store, s)
    with pytest.raises(ValidationError, match="metadata"):
        await store.update_message(s.tenant_id, saved.id, metadata=metadata)
    with pytest.raises(ValidationError, match="metadata"):
        await store.update_session(s.tenant_id, s.id, metadata=metadata)
    assert await state(store, s) == before


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, -5), (0, 10**9), (10**30, 10), (True, 5)])
async def test_bad_pagination_is_refused(store: Store, offset: Any, limit: Any) -> None:
    s = await session_of(store)
    with pytest.raises(ConfigError, match=r"offset|limit"):
        await store.get_session_messages_paginated(s.tenant_id, s.id, offset, limit)
    with pytest.raises(ConfigError, match=r"offset|limit"):
        await store.get_user_sessions(s.tenant_id, s.user_id, offset=offset, limit=limit)
    if not isinstance(offset, bool):
        with pytest.raises(ConfigError):
            QueryFilter(tenant_id=s.tenant_id, offset=offset, limit=limit)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2-pw@db.example:notaport/mofa",
        "postgresql://app:hunter2-pw@[::1/mofa",
        "mysql://app:hunter2-pw@db/mofa",
        "app:hunter2-pw@db/mofa",
        "memory://extra",
    ],
)
async def test_malformed_database_url(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        await connect_store(url)
    assert "hunter2-pw" not in str(err.value)


# -- fuzzing ------------------------------------------------------------------------------------------
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=ANY_TEXT, key=ANY_TEXT, value=JSONISH, title=ANY_TEXT)
async def test_fuzz_the_store_api(db_store: Store, content: str, key: str, value: Any, title: str) -> None:
    """Arbitrary text and metadata: either stored and read back exactly, or a ValidationError with
    nothing written. Never another exception, never a changed row."""
    s = await session_of(db_store)
    try:
        saved = await db_store.save_message(message(s, content, metadata={key: value}))
    except MofaError as exc:
        assert isinstance(exc, ValidationError), exc
        assert await db_store.count_session_messages(s.tenant_id, s.id) == 0
    else:
        got = await db_store.get_message(s.tenant_id, saved.id)
        assert got is not None and (got.content, got.metadata) == (content, {key: value})
    before = await state(db_store, s)
    try:
        await db_store.update_session(s.tenant_id, s.id, title=title, metadata={key: value})
    except MofaError as exc:
        assert isinstance(exc, ValidationError), exc
        assert await state(db_store, s) == before
    else:
        got_s = await db_store.get_session(s.tenant_id, s.id)
        assert got_s is not None and (got_s.title, got_s.metadata) == (title, {key: value})
    with pytest.raises(NotFoundError):
        storable = content.encode("utf-8", "replace").decode("utf-8")  # this part is about the missing row
        await db_store.update_message(s.tenant_id, uuid.uuid4(), content=storable)


# -- issue 14: windows, integers, lookups, the schema (items 7, 8 and 10) --------------------------------
async def three_rounds(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> uuid.UUID:
    s = await store.create_session(Session(tenant_id=tenant, user_id=user, agent_id=AGENT_ID))
    for i in range(3):
        turn: tuple[tuple[MessageRole, str], ...] = (("user", f"q{i}"), ("assistant", f"a{i}"))
        for role, text in turn:
            await store.save_message(Message(session_id=s.id, tenant_id=tenant, user_id=user, role=role,
                                             content=text))
    return s.id


@pytest.mark.parametrize("window", [5_000, 2**31 - 1])
async def test_a_large_window_resumes_on_every_store(store: Store, window: int) -> None:
    """A window of 5,000 rounds asks the store for the last 10,002 messages: PostgreSQL refused (limit
    must be 1 to 10000) and the session could not be resumed. The largest window resumes too."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    sid = await three_rounds(store, tenant, user)
    provider = ScriptedProvider(["fourth answer"])
    agent, _ = await build_agent(store, tenant, user, provider, session_id=sid, window=window)
    assert [m.content for m in agent.history if m.role != "system"] == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert await agent.chat("q3") == "fourth answer"
    sent = [m.content for m in provider.requests[-1][0]]
    assert sent[-7:] == ["q0", "a0", "q1", "a1", "q2", "a2", "q3"]
    await agent.aclose()


@pytest.mark.parametrize("window", [2**31, 2**62, 2**63, -1, True, 2.5])
async def test_a_window_out_of_range_is_refused_by_the_builder(window: Any) -> None:
    """2**62 was accepted and then overflowed SQLite (a raw OverflowError) when the session resumed."""
    with pytest.raises(ConfigError, match=r"sliding window must be a number of rounds from 0 to 2147483647"):
        LLMAgentBuilder().with_sliding_window(window)
    assert LLMAgentBuilder().with_sliding_window(None) is not None


def cli_for(url: str) -> Cli:
    return Cli(url, uuid.uuid4(), uuid.uuid4())


@pytest.fixture(params=["sqlite", "postgres"])
def cli_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return str(request.getfixturevalue("pg_url"))


async def test_cli_lookups_with_undecodable_bytes_print_one_line(cli_url: str) -> None:
    """What $'\\xff' on the command line becomes ('\\udcff'): one error line, no UnicodeEncodeError traceback."""
    cli = cli_for(cli_url)
    assert (await cli("db", "init")).exit_code == 0  # reading commands do not create the database
    for args in (["agents", "show", "\udcff"], ["agents", "disable", "x\udcff"], ["providers", "disable", "\udcff"],
                 ["usage", "--agent", "\udcff"], ["usage", "--model", "m\udcff"]):
        line = one_error_line(await cli(*args))
        assert "contains a character UTF-8 cannot encode" in line, (args, line)
    line = one_error_line(await cli("agents", "show", "chat\u200b"))
    assert "agent_code must not contain invisible or control characters (U+200B" in line


@pytest.mark.parametrize("since", ["999999999d", "99999999999999999999w", "9" * 5000 + "m"])
async def test_cli_usage_since_too_far_back_is_one_line(tmp_path: Any, since: str) -> None:
    cli = cli_for(f"sqlite:///{tmp_path / 'u.db'}")
    line = one_error_line(await cli("usage", "--since", since))
    assert "reaches back before the year 1; use 'all'" in line


async def altered(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> tuple[Store, str]:
    """A migrated store whose schema then lost a column and an index by hand."""
    if kind == "sqlite":
        import sqlite3

        url = f"sqlite:///{tmp_path / 'altered.db'}"
        store = await connect_store(url)
        await store.close()
        with sqlite3.connect(tmp_path / "altered.db") as conn:
            conn.execute("ALTER TABLE entity_session DROP COLUMN title")
            conn.execute("DROP INDEX entity_api_call_model_idx")
    else:
        import psycopg

        url = str(request.getfixturevalue("fresh_pg_url"))
        await (await connect_store(url)).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE entity_session DROP COLUMN title")
            conn.execute("DROP INDEX entity_api_call_model_idx")
    return await connect_store(url), url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_schema_altered_by_hand_is_named_not_sent_to_migrate(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """The error said "run `mofa db migrate`", and migrating then said it was up to date. Now the store
    compares the schema with what the migrations create and says what is missing."""
    store, url = await altered(kind, tmp_path, request)
    try:
        assert await store.migrate() == []
        with pytest.raises(PersistenceError) as info:
            await store.get_session(uuid.uuid4(), uuid.uuid4())
        text = str(info.value)
        assert "changed by hand" in text and "table entity_session has no column title" in text, text
        assert "run `mofa db migrate`" not in text
        assert await store.check_schema() == [
            "table entity_session has no column title",
            "index entity_api_call_model_idx is missing",
        ]
        # a write inside the caller's transaction gets the same diagnosis, and the store works on
        with pytest.raises(PersistenceError, match="has no column title"):
            async with store.transaction() as tx:
                await store.create_session(Session(tenant_id=uuid.uuid4(), user_id=uuid.uuid4()), tx=tx)
    finally:
        await store.close()
    cli = cli_for(url)
    line = one_error_line(await cli("db", "migrate"))
    assert "entity_session has no column title" in line and "index entity_api_call_model_idx" in line
    status = await cli("db", "status")
    assert status.exit_code == 1 and "table entity_session has no column title" in status.output


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_unmigrated_schema_still_says_to_migrate(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'blank.db'}" if kind == "sqlite" else str(request.getfixturevalue("fresh_pg_url"))
    store = await connect_store(url, migrate=False)
    try:
        assert await store.check_schema() != []
        with pytest.raises(PersistenceError, match=r"pending: run `mofa db migrate`"):
            await store.get_session(uuid.uuid4(), uuid.uuid4())
        assert len(await store.migrate()) == len(await store.migration_status())
        assert await store.check_schema() == []
        assert await store.get_session(uuid.uuid4(), uuid.uuid4()) is None
    finally:
        await store.close()
