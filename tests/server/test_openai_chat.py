"""OpenAI Chat Completions and Models on `mofa serve`, through the official `openai` client (sync and async).

The servers are two real `mofa serve` processes on one PostgreSQL whose provider is the loopback fault server
(`fault_pair`): it records what was sent upstream and reports real usage. Every test uses a fresh tenant.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from mofa_sdk.entities import Agent, Message, Provider
from mofa_sdk.persistence import connect_store
from mofa_sdk.server.runs import find_call
from tests.server.support import FaultPair, auth, make_key
from tests.support.fault_server import Reply

SESSION = "X-Mofa-Session-Id"
CONTEXT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question, ünïcode ✓"},
]


def sync_client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20)


def async_client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20)


async def stored(db: str, tenant: uuid.UUID, session_id: uuid.UUID) -> list[Message]:
    store = await connect_store(db)
    try:
        return await store.get_session_messages(tenant, session_id)
    finally:
        await store.close()


async def sessions_of(db: str, row: Any) -> list[Any]:
    store = await connect_store(db)
    try:
        return await store.get_user_sessions(row.tenant_id, row.user_id)
    finally:
        await store.close()


async def call_of(db: str, reply: Message) -> Any:
    store = await connect_store(db)
    try:
        return await find_call(store, reply)
    finally:
        await store.close()


async def test_streamed_with_include_usage_sync_client(fault_pair: FaultPair) -> None:
    """The sync client streams; the client's messages are what went upstream; they and the reply are saved,
    byte for byte what the client saw; the usage chunk and the api-call row hold the
    provider's real counts."""
    db, server, fault = fault_pair.db, fault_pair.servers[0], fault_pair.fault
    key, row = await make_key(db)
    reply = Reply(chunks=["Hel", "lo, ", "wörld ✓\n", "«fin»"])
    fault.push(reply)

    def run() -> tuple[dict[str, str], list[Any]]:
        with sync_client(server.url, key) as client, client.chat.completions.with_streaming_response.create(
            model="plain-model", messages=CONTEXT, stream=True, stream_options={"include_usage": True}
        ) as response:
            return dict(response.headers), list(response.parse())

    headers, chunks = await asyncio.to_thread(run)
    sent = fault.requests[-1].body
    assert sent["messages"] == CONTEXT and sent["model"] == "plain-model"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.expected_text()
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (11, 4, 15)
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"

    sid = uuid.UUID(headers["x-mofa-session-id"])
    rows = await stored(db, row.tenant_id, sid)
    # a history no session holds starts one holding all of it (so that its next turn continues it)
    assert [(m.role, m.content, m.status) for m in rows] == [
        *((m["role"], m["content"], "complete") for m in CONTEXT), ("assistant", text, "complete")]
    assert chunks[0].id == f"chatcmpl-{rows[-1].id}"
    call = await call_of(db, rows[-1])
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (11, 4, 15)
    assert call.status == "success" and call.tokens_estimated is False


async def test_the_stream_ends_with_done_and_without_usage_chunk_unless_asked(fault_pair: FaultPair) -> None:
    db, server = fault_pair.db, fault_pair.servers[1]
    key, _ = await make_key(db)
    fault_pair.fault.push(Reply(chunks=["a", "b"]))
    async with httpx2.AsyncClient(timeout=20) as http:
        r = await http.post(f"{server.url}/v1/chat/completions", headers=auth(key),
                            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f and not f.startswith(":")]
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert all("usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "ab"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_not_streamed_async_client_and_the_session_header_both_ways(fault_pair: FaultPair) -> None:
    """A session named by the client is created on first use and continued; the messages it gets are what
    the client sent each time (not the window); without the header each request gets a new session."""
    db, server, fault = fault_pair.db, fault_pair.servers[0], fault_pair.fault
    key, row = await make_key(db)
    sid = uuid.uuid4()
    async with async_client(server.url, key) as client:
        fault.push(Reply(chunks=["one ", "two"]))
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "q1"}], extra_headers={SESSION: str(sid)})
        first = raw.parse()
        assert raw.headers[SESSION] == str(sid)
        assert first.choices[0].message.content == "one two" and first.choices[0].finish_reason == "stop"
        assert first.usage is not None and first.usage.total_tokens == 13
        fault.push(Reply(chunks=["three"]))
        again = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "one two"},
                 {"role": "user", "content": "q2"}]
        raw2 = await client.chat.completions.with_raw_response.create(
            model="m", messages=again, extra_headers={SESSION: str(sid)})  # type: ignore[arg-type]
        assert raw2.headers[SESSION] == str(sid) and raw2.parse().choices[0].message.content == "three"
        assert fault.requests[-1].body["messages"] == again
        fault.push(Reply(chunks=["x"]))
        raw3 = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "elsewhere"}])
        other = uuid.UUID(raw3.headers[SESSION])
    assert other != sid
    rows = await stored(db, row.tenant_id, sid)
    assert [(m.role, m.content) for m in rows] == [
        ("user", "q1"), ("assistant", "one two"), ("user", "q2"), ("assistant", "three")]
    assert [(m.role, m.content) for m in await stored(db, row.tenant_id, other)] == [
        ("user", "elsewhere"), ("assistant", "x")]
    # the native API sees the same rows
    async with httpx2.AsyncClient(timeout=10) as http:
        page = (await http.get(f"{server.url}/v1/sessions/{sid}/messages", headers=auth(key))).json()
    assert [m["content"] for m in page["data"]] == ["q1", "one two", "q2", "three"]


async def test_model_names_an_agent_row_else_the_default_provider_and_models_lists_them(
    fault_pair: FaultPair,
) -> None:
    db, server, fault = fault_pair.db, fault_pair.servers[1], fault_pair.fault
    key, row = await make_key(db)
    store = await connect_store(db)
    try:
        p = await store.create_provider(Provider(tenant_id=row.tenant_id, provider_name="fault",
                                                 provider_type="compatible", api_base=fault.base_url,
                                                 api_key=SecretStr("sk-row-key-0000")))
        await store.create_agent(Agent(tenant_id=row.tenant_id, agent_code="helper", agent_name="Helper",
                                       model_name="row-model", system_prompt="You are the row.", provider_id=p.id,
                                       temperature=0.5))
    finally:
        await store.close()
    async with async_client(server.url, key) as client:
        fault.push(Reply(chunks=["row"]))
        out = await client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=7)
        assert out.choices[0].message.content == "row" and out.model == "helper"
        sent = fault.requests[-1]
        assert sent.body["model"] == "row-model" and sent.body["temperature"] == 0.5
        assert sent.body["max_tokens"] == 7
        assert sent.body["messages"] == [{"role": "system", "content": "You are the row."},
                                         {"role": "user", "content": "hi"}]
        assert sent.headers["authorization"] == "Bearer sk-row-key-0000"

        fault.push(Reply(chunks=["plain"]))
        out = await client.chat.completions.create(model="some-upstream-model", top_p=0.3,
                                                   messages=[{"role": "developer", "content": "d"},
                                                             {"role": "user", "content": [{"type": "text",
                                                                                           "text": "hi"}]}])
        sent = fault.requests[-1]
        assert out.choices[0].message.content == "plain"
        assert sent.body["model"] == "some-upstream-model" and sent.body["top_p"] == 0.3
        assert sent.body["messages"] == [{"role": "system", "content": "d"}, {"role": "user", "content": "hi"}]
        assert sent.headers["authorization"] == "Bearer sk-test-not-a-secret"

        models = await client.models.list()
        ids = [m.id for m in models.data]
        assert ids[0] == "helper" and len(ids) == 2 and all(m.object == "model" for m in models.data)
        assert (await client.models.retrieve("helper")).id == "helper"
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("no-such-model")
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


def _shape(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


async def test_errors_take_openai_shape_and_write_nothing(fault_pair: FaultPair) -> None:
    db, server, fault = fault_pair.db, fault_pair.servers[0], fault_pair.fault
    key, row = await make_key(db)
    other_key, other_row = await make_key(db)
    before = len(fault.requests)
    user: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    async with async_client(server.url, key) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=[])
        assert _shape(bad.value)["param"] == "messages" and bad.value.status_code == 400
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=user, temperature=5)
        assert _shape(bad.value)["param"] == "temperature"
        with pytest.raises(openai.BadRequestError) as bad:  # the legacy form: refused, naming tools instead
            await client.chat.completions.create(
                model="m", messages=user, functions=[{"name": "f", "parameters": {"type": "object"}}])
        assert _shape(bad.value)["param"] == "functions" and bad.value.code == "unsupported_parameter"
        assert "tools" in _shape(bad.value)["message"]
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="m", messages=user, tools=[{"type": "function", "function": {"name": "bad name!"}}])
        assert _shape(bad.value)["param"] == "tools[0]"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="m", messages=user, tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "function", "function": {"name": "g"}})
        assert _shape(bad.value)["param"] == "tool_choice"
        with pytest.raises(openai.BadRequestError) as bad:  # a result that answers no call
            await client.chat.completions.create(
                model="m", messages=[{"role": "tool", "content": "x", "tool_call_id": "t"}])
        assert _shape(bad.value)["param"] == "messages[0]" and "'t'" in _shape(bad.value)["message"]
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}])
        assert _shape(bad.value)["param"] == "messages[0].content"  # an image needs text beside it
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=user, n=2)
        assert _shape(bad.value)["param"] == "n"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=[{"role": "assistant", "content": "only"}])
        assert _shape(bad.value)["param"] == "messages"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=user, extra_headers={SESSION: "not-a-uuid"})
        assert _shape(bad.value)["param"] == SESSION
        with pytest.raises(openai.BadRequestError) as bad:  # malformed JSON, through the body limit's path
            await client.post("/chat/completions", content=b"{nope", cast_to=object,
                              options={"headers": {"content-type": "application/json"}})
        assert "malformed JSON" in _shape(bad.value)["message"]
    async with async_client(server.url, "mofa_sk_wrong") as client:
        with pytest.raises(openai.AuthenticationError) as unauthorized:
            await client.chat.completions.create(model="m", messages=user)
        assert _shape(unauthorized.value)["code"] == "invalid_api_key"
    async with httpx2.AsyncClient(timeout=10) as http:
        r = await http.post(f"{server.url}/v1/chat/completions", json={"model": "m", "messages": user})
        assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = await http.get(f"{server.url}/v1/models")
        assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
        r = await http.post(f"{server.url}/v1/chat/completions", headers=auth(key),
                            json={"model": "m", "messages": [{"role": "user", "content": "x" * 1_100_000}]})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        lone = b'{"model": "m", "messages": [{"role": "user", "content": "bad \\ud800 text"}]}'
        r = await http.post(f"{server.url}/v1/chat/completions", content=lone,
                            headers={**auth(key), "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content", r.text
        r = await http.delete(f"{server.url}/v1/models/m", headers=auth(key))
        assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"

    # another tenant's session: 404, exactly like an unknown one, and nothing is added to it
    async with async_client(server.url, other_key) as other:
        fault.push(Reply(chunks=["theirs"]))
        raw = await other.chat.completions.with_raw_response.create(model="m", messages=user)
        theirs = raw.headers[SESSION]
    before = len(fault.requests)
    async with async_client(server.url, key) as client:
        with pytest.raises(openai.NotFoundError) as nf:
            await client.chat.completions.create(model="m", messages=user, extra_headers={SESSION: theirs})
        assert _shape(nf.value)["type"] == "invalid_request_error" and theirs in _shape(nf.value)["message"]
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="m", messages=user, stream=True,
                                                 extra_headers={SESSION: theirs})
    assert len(fault.requests) == before
    assert await sessions_of(db, row) == []
    assert [m.content for m in await stored(db, other_row.tenant_id, uuid.UUID(theirs))] == ["hi", "theirs"]


async def test_an_upstream_failure_is_a_502_in_openai_shape(fault_pair: FaultPair) -> None:
    """A plain model the upstream does not know: its error comes back as a 502 naming it (streamed: an error
    object in the stream, which the client raises)."""
    db, server, fault = fault_pair.db, fault_pair.servers[0], fault_pair.fault
    key, _ = await make_key(db)
    refusal = {"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error"}}
    async with async_client(server.url, key) as client:
        fault.push(Reply(status=404, error_body=refusal))
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        assert failed.value.status_code == 502 and "nope" in _shape(failed.value)["message"]
        fault.push(Reply(status=404, error_body=refusal))
        stream = await client.chat.completions.create(model="nope", stream=True,
                                                      messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.APIError, match="nope"):
            async for _ in stream:
                pass


async def test_a_client_that_disconnects_mid_stream_does_not_stop_the_run(fault_pair: FaultPair) -> None:
    db, server, fault = fault_pair.db, fault_pair.servers[1], fault_pair.fault
    key, row = await make_key(db)
    reply = Reply(chunks=30, chunk_delay=0.05)
    fault.push(reply)
    async with httpx2.AsyncClient(timeout=20) as http, http.stream(
        "POST", f"{server.url}/v1/chat/completions", headers=auth(key),
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "long one"}]},
    ) as r:
        sid = uuid.UUID(r.headers[SESSION])
        seen = 0
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content":"tok' in line:
                seen += 1
                if seen == 2:
                    break  # leaving the block closes the connection mid-stream
    rows: list[Message] = []
    for _ in range(200):
        rows = await stored(db, row.tenant_id, sid)
        if len(rows) == 2 and rows[1].status == "complete":
            break
        await asyncio.sleep(0.05)
    assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[1].content == reply.expected_text()
    assert fault.requests[-1].client_disconnected is False


async def test_streamed_async_client_into_a_named_session(fault_pair: FaultPair) -> None:
    db, server, fault = fault_pair.db, fault_pair.servers[1], fault_pair.fault
    key, row = await make_key(db)
    sid = uuid.uuid4()
    reply = Reply(chunks=["a ", "streamed ", "réply"], surrogates="split")
    fault.push(reply)
    async with async_client(server.url, key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="m", stream=True, messages=[{"role": "user", "content": "go"}], extra_headers={SESSION: str(sid)})
        assert raw.headers[SESSION] == str(sid)
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == reply.expected_text()
    assert [m.content for m in await stored(db, row.tenant_id, sid)] == ["go", text]
