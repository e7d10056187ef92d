"""Provider faults end to end: OpenAICompatibleProvider against the scripted fault server, rows asserted."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mofa_sdk.errors import (
    AuthenticationError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
)
from mofa_sdk.llm import OpenAICompatibleProvider
from tests.support.fault_server import FaultServer, Reply
from tests.support.rows import assert_consistent, build_agent, calls, rows

KEY = "sk-fault-test-key-7f3a9c"


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


def provider(srv: FaultServer, **kw: Any) -> OpenAICompatibleProvider:
    async def no_wait(_: float) -> None:  # 429 back-off is not what is under test
        return None

    kw.setdefault("read_timeout", 5.0)
    return OpenAICompatibleProvider(
        base_url=srv.base_url, api_key=KEY, default_model="fault-model", max_retries=1, sleep=no_wait, **kw
    )


# (reply script, error class, api-call status, error code, partial reply that must be stored or None)
CASES = {
    "401": ([Reply(status=401)], AuthenticationError, "failed", "authentication", None),
    "429": ([Reply(status=429), Reply(status=429)], RateLimitError, "rate_limited", "rate_limited", None),
    "500": ([Reply(status=500)], ProviderServerError, "failed", "server_error", None),
    "cut": ([Reply(chunks=5, cut_after=2)], StreamInterruptedError, "failed", "stream_interrupted", "tok0 tok1 "),
    "stall": ([Reply(chunks=5, stall_after=2)], ProviderTimeoutError, "timeout", "timeout", "tok0 tok1 "),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_provider_fault_is_recorded(
    db_store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID, case: str
) -> None:
    script, error, call_status, code, partial = CASES[case]
    server.push(*script)
    agent, _ = await build_agent(db_store, tenant, user, provider(server, read_timeout=0.5))
    seen = ""
    with pytest.raises(error) as err:
        async for text in agent.chat_stream("hello?"):
            seen += text
    assert KEY not in str(err.value)
    expected = [(1, "user", "hello?", "complete")]
    if partial is not None:
        assert seen == partial == err.value.partial_text
        expected.append((2, "assistant", partial, "error"))
    assert await rows(db_store, tenant, agent.session_id) == expected
    (call,) = await calls(db_store, tenant, agent.session_id)
    assert (call.status, call.error_code) == (call_status, code)
    assert call.error_message and KEY not in call.error_message
    assert call.response_message_id == (None if partial is None else (await rows_ids(db_store, tenant, agent))[1])
    await assert_consistent(db_store, tenant, agent.session_id)

    # the next turn on the same session works and lands after the failed one
    assert await agent.chat("again") == "tok0 tok1 tok2 "
    after = await rows(db_store, tenant, agent.session_id)
    assert after[-2:] == [
        (len(expected) + 1, "user", "again", "complete"),
        (len(expected) + 2, "assistant", "tok0 tok1 tok2 ", "complete"),
    ]
    assert [c.status for c in await calls(db_store, tenant, agent.session_id)] == [call_status, "success"]
    await agent.aclose()


async def rows_ids(store: Any, tenant: uuid.UUID, agent: Any) -> list[uuid.UUID]:
    return [m.id for m in await store.get_session_messages(tenant, agent.session_id)]


async def test_429_then_success_is_one_reply_and_one_call(
    db_store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(status=429, headers={"retry-after": "0"}), Reply(chunks=["fine", " thanks"]))
    agent, _ = await build_agent(db_store, tenant, user, provider(server))
    assert await agent.chat("how are you") == "fine thanks"
    assert len(server.requests) == 2  # retried once, before any text: nothing doubled
    assert await rows(db_store, tenant, agent.session_id) == [
        (1, "user", "how are you", "complete"),
        (2, "assistant", "fine thanks", "complete"),
    ]
    (call,) = await calls(db_store, tenant, agent.session_id)
    assert call.status == "success" and call.provider_response_id == "chatcmpl-fault"
    assert (call.prompt_tokens, call.completion_tokens, call.tokens_estimated) == (11, 2, False)
    await agent.aclose()


async def test_consumer_hanging_up_closes_the_http_stream(
    db_store: Any, server: FaultServer, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    server.push(Reply(chunks=50, chunk_delay=0.02))
    agent, _ = await build_agent(db_store, tenant, user, provider(server))
    got = ""
    async with agent.chat_stream("long answer please") as stream:
        async for text in stream:
            got += text
            if text == "tok2 ":
                break
    await server.requests[0].disconnected.wait()
    assert server.requests[0].client_disconnected and not server.requests[0].finished_writing
    assert await rows(db_store, tenant, agent.session_id) == [
        (1, "user", "long answer please", "complete"),
        (2, "assistant", got, "cancelled"),
    ]
    (call,) = await calls(db_store, tenant, agent.session_id)
    assert call.status == "cancelled"
    await agent.aclose()
