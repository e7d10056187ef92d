"""The provider boundary end to end (issue 14): OpenAICompatibleProvider against the fault server, every
turn saved through the persistence plugin, rows asserted on every store. Text the provider breaks is
repaired, implausible usage is dropped, streams that never end are bounded, and misleading errors are named
for what they are; ``mofa chat`` is run as a real process for what only a terminal shows."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mofa_sdk.errors import IdleTimeoutError, MalformedResponseError, ReplyTooLargeError, TurnTimeoutError
from mofa_sdk.llm import LLMAgent, LLMAgentBuilder, OpenAICompatibleProvider
from mofa_sdk.llm._tokens import estimate_tokens
from mofa_sdk.persistence import PersistencePlugin, QueryFilter, connect_store
from tests.support.fault_server import FaultServer, Reply
from tests.support.rows import AGENT_ID, assert_consistent, build_agent, calls, rows

ROOT = Path(__file__).resolve().parents[2]
#: a bound for tests whose failure mode before the fix was to hang forever
HANG = 60


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


def provider(srv: FaultServer, read_timeout: float = 5.0) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(base_url=srv.base_url, default_model="fault-model", read_timeout=read_timeout)


async def consume(agent: LLMAgent, text: str = "hello?") -> tuple[str, BaseException | None]:
    """What the user saw, and what the stream raised (None for a clean end)."""
    seen = ""
    try:
        async for delta in agent.chat_stream(text):
            seen += delta
    except Exception as exc:
        return seen, exc
    return seen, None


# -- item 1: a reply the user saw is saved ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["split", "lone"])
async def test_broken_surrogates_are_repaired_and_the_reply_saved_after_checkpoints(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID, mode: Any
) -> None:
    reply = Reply(chunks=14, surrogates=mode, chunk_delay=0.005)  # 42 or 29 deltas
    server.push(reply)
    # a checkpoint after (nearly) every delta: the case that cut the stream at the first one
    agent, plugin = await build_agent(store, tenant, user, provider(server), checkpoint_interval=0.001)
    seen, error = await consume(agent)
    assert error is None
    expected = reply.expected_text()
    assert seen == expected  # the whole reply, repaired
    assert await rows(store, tenant, agent.session_id) == [
        (1, "user", "hello?", "complete"),
        (2, "assistant", expected, "complete"),
    ]
    (call,) = await calls(store, tenant, agent.session_id)
    assert (call.status, call.error_code) == ("success", "repaired")
    note = "joined 14 surrogate pair(s)" if mode == "split" else "replaced 15 lone surrogate(s) by U+FFFD"
    assert call.error_message is not None and note in call.error_message
    assert (call.prompt_tokens, call.completion_tokens, call.tokens_estimated) == (11, len(reply.pieces()), False)
    assert plugin.pending == []
    await assert_consistent(store, tenant, agent.session_id)
    assert await agent.chat("again") == "tok0 tok1 tok2 "
    await agent.aclose()


@pytest.mark.parametrize(
    "counts",
    [
        {"prompt_tokens": -5, "completion_tokens": 3, "total_tokens": -2},
        {"prompt_tokens": 11, "completion_tokens": 2**31, "total_tokens": 2**31 + 11},
    ],
    ids=["negative", "2**31"],
)
async def test_implausible_usage_is_dropped_flagged_and_the_reply_saved(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID, counts: dict[str, int]
) -> None:
    server.push(Reply(chunks=["fine", " reply"], usage_counts=counts))
    agent, plugin = await build_agent(store, tenant, user, provider(server))
    seen, error = await consume(agent)
    assert error is None and seen == "fine reply"
    assert await rows(store, tenant, agent.session_id) == [
        (1, "user", "hello?", "complete"),
        (2, "assistant", "fine reply", "complete"),
    ]
    (call,) = await calls(store, tenant, agent.session_id)
    assert call.status == "success" and call.tokens_estimated  # counted locally, and marked
    assert call.completion_tokens == estimate_tokens("fine reply")
    assert call.total_tokens == call.prompt_tokens + call.completion_tokens
    assert (call.error_code, plugin.pending) == ("repaired", [])
    bad = next(f"{k}={v}" for k, v in counts.items() if not 0 <= v < 2**31)
    assert call.error_message is not None and "implausible usage" in call.error_message and bad in call.error_message
    stats = await store.get_statistics(QueryFilter(tenant_id=tenant))
    assert stats.completion_tokens == call.completion_tokens
    await agent.aclose()


# -- item 3: a stream that never ends does not hang the turn ------------------------------------------


async def assert_bounded(
    store: Any, tenant: uuid.UUID, agent: LLMAgent, server: FaultServer, error: type[Exception],
    status: str, code: str,
) -> str:
    seen, raised = await asyncio.wait_for(consume(agent), HANG)
    assert isinstance(raised, error), raised
    assert getattr(raised, "partial_text", None) == seen
    expected = [(1, "user", "hello?", "complete")] + ([(2, "assistant", seen, "error")] if seen else [])
    assert await rows(store, tenant, agent.session_id) == expected
    (call,) = await calls(store, tenant, agent.session_id)
    assert (call.status, call.error_code) == (status, code)
    await assert_consistent(store, tenant, agent.session_id)
    await asyncio.wait_for(server.requests[0].disconnected.wait(), HANG)  # the HTTP stream was closed
    assert not server.requests[0].finished_writing
    return seen


async def test_keepalive_comments_only_end_in_the_idle_timeout(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    # pings far more often than the provider's 5 s read timeout: the HTTP layer alone never gives up
    server.push(Reply(chunks=["partial ", "reply "], keepalive_after=2, keepalive_interval=0.05))
    agent = await _with_limits(store, tenant, user, server, idle=0.5)
    seen = await assert_bounded(store, tenant, agent, server, IdleTimeoutError, "timeout", "idle_timeout")
    assert seen == "partial reply "
    await agent.aclose()


async def test_endless_empty_deltas_end_in_the_idle_timeout(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(chunks=["something "], endless="empty", chunk_delay=0.01))
    agent = await _with_limits(store, tenant, user, server, idle=0.5)
    seen = await assert_bounded(store, tenant, agent, server, IdleTimeoutError, "timeout", "idle_timeout")
    assert seen == "something " and server.requests[0].chunks_written > 2
    await agent.aclose()


async def test_endless_content_is_cut_at_the_size_cap(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(chunks=0, endless="content"))
    agent = await _with_limits(store, tenant, user, server, chars=10_000)
    seen = await assert_bounded(store, tenant, agent, server, ReplyTooLargeError, "failed", "reply_too_large")
    assert seen == "more " * 2_000  # exactly the cap
    await agent.aclose()


async def test_endless_content_ends_at_the_turn_timeout(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(chunks=0, endless="content", chunk_delay=0.01))
    agent = await _with_limits(store, tenant, user, server, turn=0.5)
    seen = await assert_bounded(store, tenant, agent, server, TurnTimeoutError, "timeout", "turn_timeout")
    assert seen.startswith("more more ") and set(seen.split()) == {"more"}
    await agent.aclose()


async def _with_limits(
    store: Any, tenant: uuid.UUID, user: uuid.UUID, server: FaultServer, *,
    idle: float | None = None, turn: float | None = None, chars: int | None = None,
) -> LLMAgent:
    """An agent with only the given bounds (the others off), saving through the plugin."""
    plugin = PersistencePlugin.from_store("persistence-plugin", store, user, tenant, AGENT_ID)
    return await (
        LLMAgentBuilder()
        .with_provider(provider(server))
        .with_idle_timeout(idle)
        .with_turn_timeout(turn)
        .with_max_reply_chars(chars)
        .with_persistence_plugin(plugin)
        .build_async()
    )


# -- item 10: errors named for what they are -----------------------------------------------------------


async def test_an_html_page_with_status_200_is_not_a_stream_that_ended_early(
    store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(html=True))
    agent, _ = await build_agent(store, tenant, user, provider(server))
    seen, error = await consume(agent)
    assert seen == "" and isinstance(error, MalformedResponseError)
    assert "not an OpenAI-compatible response (got text/html" in str(error)
    assert await rows(store, tenant, agent.session_id) == [(1, "user", "hello?", "complete")]
    (call,) = await calls(store, tenant, agent.session_id)
    assert (call.status, call.error_code) == ("failed", "malformed_response")
    assert call.error_message is not None and "text/html" in call.error_message
    await agent.aclose()


# -- mofa chat, as a real process ----------------------------------------------------------------------


async def mofa_chat(db_url: str, tenant: uuid.UUID, *args: str | bytes, stdin: bytes) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MOFA_"))}
    env.update(DATABASE_URL=db_url, TENANT_ID=str(tenant), PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mofa_sdk.cli", "chat", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), HANG)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mofa_chat_prints_a_repaired_reply_and_goes_on(db_url: str, server: FaultServer) -> None:
    first = Reply(chunks=["broken", " text"], surrogates="lone")
    server.push(first, Reply(chunks=["second", " reply"]))
    tenant = uuid.uuid4()
    code, out, err = await mofa_chat(db_url, tenant, "--base-url", server.base_url, "--lines", stdin=b"one\ntwo\n")
    assert "Traceback" not in err and "UnicodeEncodeError" not in err, err
    assert code == 0, err
    assert out == f"{first.expected_text()}\nsecond reply\n"
    store = await connect_store(db_url)
    try:
        (session,) = await store.get_user_sessions(tenant, uuid.UUID(int=0))
        saved = await store.get_session_messages(tenant, session.id)
        assert [(m.content, m.status) for m in saved] == [
            ("one", "complete"), (first.expected_text(), "complete"), ("two", "complete"),
            ("second reply", "complete"),
        ]
    finally:
        await store.close()


async def test_mofa_chat_refuses_a_system_prompt_that_is_not_text(db_url: str, server: FaultServer) -> None:
    tenant = uuid.uuid4()
    # $'\xff': not UTF-8, so Python's argv holds a lone surrogate
    code, out, err = await mofa_chat(
        db_url, tenant, "--base-url", server.base_url, "--system", b"\xff", stdin=b"hello\n"
    )
    assert code == 1 and out == ""
    assert "Traceback" not in err
    assert "the system prompt contains a character UTF-8 cannot encode" in err, err
    assert "not valid JSON" not in err and "malformed" not in err.lower()
    assert server.requests == []  # nothing sent
    store = await connect_store(db_url)
    try:
        assert await store.get_user_sessions(tenant, uuid.UUID(int=0)) == []  # nothing written
    finally:
        await store.close()
