"""The Responses API through the official ``openai`` client against real served processes: a response is a run
(its rows are ordinary session rows), chains by previous_response_id and by conversation carry the earlier turn
(the scripted provider's ``echo`` replies with what it was sent), streaming events in order, resume, cancel,
delete, background, a killed worker, errors with nothing written."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import openai
import pytest

from mofa_sdk.persistence import connect_store
from tests.server.support import FaultPair, InProcess, Launcher, Served, make_key, openai_client

CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
           "response.completed"]
PROLOGUE = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]


async def _row(db: str, tenant: uuid.UUID, response_id: str) -> Any:
    store = await connect_store(db)
    try:
        return await store.get_message(tenant, uuid.UUID(response_id.removeprefix("resp_")))
    finally:
        await store.close()


async def _counts(db: str, tenant: uuid.UUID, user: uuid.UUID) -> tuple[int, int]:
    store = await connect_store(db)
    try:
        found = await store.get_user_sessions(tenant, user, limit=1000)
        return len(found), sum([await store.count_session_messages(tenant, s.id) for s in found])
    finally:
        await store.close()


async def _until(oa: openai.AsyncOpenAI, rid: str, done: Any) -> Any:
    for _ in range(200):
        r = await oa.responses.retrieve(rid)
        if done(r):
            return r
        await asyncio.sleep(0.05)
    raise AssertionError(f"response {rid} never got there: {r.status}")


async def test_chain_by_previous_response_id_and_by_conversation(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    first = await oa.responses.create(model="scripted-model", input="my name is Ada echo", instructions="be brief")
    assert first.status == "completed" and first.output_text.startswith("system: be brief\nuser: my name is Ada")
    assert first.usage is not None and first.usage.output_tokens > 0
    second = await oa.responses.create(input="what is my name? echo", previous_response_id=first.id)
    # the provider was sent the first turn, read from the database (the client sent only the new message)
    assert f"user: my name is Ada echo\nassistant: {first.output_text}" in second.output_text
    assert second.output_text.endswith("user: what is my name? echo\n")
    assert second.previous_response_id == first.id

    conv = await oa.conversations.create(items=[{"role": "user", "content": "remember 42"},
                                                {"role": "assistant", "content": "noted"}])
    a = await oa.responses.create(input="and 7 echo", conversation=conv.id)
    assert a.output_text == "user: remember 42\nassistant: noted\nuser: and 7 echo\n"
    b = await oa.responses.create(input=[{"role": "user", "content": "sum? echo"}], conversation={"id": conv.id})
    assert b.output_text.startswith(a.output_text[:-1]) and f"assistant: {a.output_text}" in b.output_text
    items = [i async for i in oa.conversations.items.list(conv.id, order="asc")]
    assert [i.role for i in items] == ["user", "assistant", "user", "assistant", "user", "assistant"]  # type: ignore[union-attr]
    assert items[3].id == b.id.replace("resp_", "msg_") or items[3].id == a.id.replace("resp_", "msg_")
    inputs = await oa.responses.input_items.list(b.id)
    assert [i.content[0].text for i in inputs.data] == ["sum? echo"]  # type: ignore[union-attr, index]
    # a multi-item input: the earlier items are rows of the session before the turn reads its window
    multi = await oa.responses.create(input=[{"role": "user", "content": "one"}, {"role": "assistant",
                                                                                   "content": "two"},
                                             {"role": "user", "content": "three echo"}])
    assert multi.output_text == "user: one\nassistant: two\nuser: three echo\n"
    listed = await oa.responses.input_items.list(multi.id, order="asc")
    assert [i.content[0].text for i in listed.data] == ["one", "two", "three echo"]  # type: ignore[union-attr, index]
    assert (await _row(in_app.db, row.tenant_id, multi.id)).content == multi.output_text


async def test_stream_events_in_order_equal_stored_and_resume(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    events = []
    async with await oa.responses.create(input="words=12 delay=0.005 ✓", stream=True) as stream:
        async for e in stream:
            events.append(e)
    kinds = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert kinds == PROLOGUE + ["response.output_text.delta"] * len(deltas) + CLOSING and len(deltas) >= 12
    assert [e.sequence_number for e in events] == list(range(len(events)))
    rid = events[0].response.id  # type: ignore[union-attr]
    streamed = "".join(e.delta for e in deltas)
    done = events[-1].response  # type: ignore[union-attr]
    assert done.status == "completed" and done.output_text == streamed
    assert events[-4].text == streamed  # type: ignore[union-attr]
    stored = await _row(in_app.db, row.tenant_id, rid)
    assert stored.content.encode() == streamed.encode() and stored.status == "complete"
    assert (await oa.responses.retrieve(rid)).output_text == streamed

    for after in (2, 7, len(events) - 3):  # resume the same log: the events after that sequence number
        resumed = [e async for e in await oa.responses.retrieve(rid, stream=True, starting_after=after)]
        assert [(e.type, e.sequence_number) for e in resumed] == [(e.type, e.sequence_number)
                                                                  for e in events[after + 1:]]
        assert [getattr(e, "delta", None) for e in resumed] == [getattr(e, "delta", None) for e in events[after + 1:]]


async def test_background_cancel_delete(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    bg = await oa.responses.create(input="words=20 delay=0.01", background=True)
    assert bg.status in ("queued", "in_progress") and bg.background
    done = await _until(oa, bg.id, lambda r: r.status != "in_progress")
    assert done.status == "completed" and done.output_text.startswith("w0 w1") and done.usage.total_tokens > 0

    slow = await oa.responses.create(input="words=400 delay=0.02", background=True)
    await _until(oa, slow.id, lambda r: len(r.output_text) > 10)
    cancelled = await oa.responses.cancel(slow.id)
    assert cancelled.status == "cancelled" and cancelled.output_text.startswith("w0 w1")
    again = await oa.responses.retrieve(slow.id)
    assert again.status == "cancelled" and again.output_text == cancelled.output_text
    assert not again.output_text.endswith("«fin»\n")  # stopped part way
    assert (await _row(in_app.db, row.tenant_id, slow.id)).status == "cancelled"

    before = await _counts(in_app.db, row.tenant_id, row.user_id)
    await oa.responses.delete(done.id)
    assert await _counts(in_app.db, row.tenant_id, row.user_id) == (before[0], before[1] - 2)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.retrieve(done.id)
    with pytest.raises(openai.NotFoundError):
        await oa.responses.delete(done.id)


async def test_errors_openai_shape_nothing_written(in_app: InProcess) -> None:
    key, row = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    mine = await oa.responses.create(input="hi")
    before = await _counts(in_app.db, row.tenant_id, row.user_id)
    other_key, other = await make_key(in_app.db)
    thief = openai_client(in_app.url, other_key, in_app.transport)
    unknown = "resp_" + uuid.uuid4().hex
    for call in (thief.responses.retrieve(mine.id), thief.responses.cancel(mine.id),
                 thief.responses.delete(mine.id), thief.responses.input_items.list(mine.id),
                 thief.responses.create(input="x", previous_response_id=mine.id),
                 oa.responses.retrieve(unknown), oa.responses.cancel(unknown), oa.responses.delete(unknown),
                 oa.responses.create(input="x", previous_response_id=unknown),
                 oa.responses.create(input="x", conversation="conv_" + uuid.uuid4().hex)):
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        body = caught.value.body
        assert isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body)
    for bad in ([{"type": "function_call_output", "call_id": "c", "output": "x"}],
                [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
                [{"role": "assistant", "content": "last is not a user"}], [], 42, "  "):
        with pytest.raises(openai.BadRequestError) as refused:
            await oa.responses.create(input=bad)  # type: ignore[arg-type]
        assert refused.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    for extra in ({"temperature": 3}, {"max_output_tokens": 0}, {"tools": [{"type": "web_search"}]},
                  {"previous_response_id": mine.id, "conversation": "conv_x"}):
        with pytest.raises(openai.BadRequestError):
            await oa.responses.create(input="x", **extra)
    with pytest.raises(openai.BadRequestError):
        await oa.responses.create(input="x", extra_body={"frobnicate": 1})
    with pytest.raises(openai.APIStatusError) as big:  # over the body limit (1 MB by default)
        await oa.responses.create(input="x" * 1_100_000)
    assert big.value.status_code == 413
    assert await _counts(in_app.db, row.tenant_id, row.user_id) == before
    assert await _counts(in_app.db, other.tenant_id, other.user_id) == (0, 0)


async def test_killed_worker_reads_incomplete_with_checkpointed_text(launcher: Launcher, sqlite_url: str) -> None:
    server = await launcher.scripted(sqlite_url, "--checkpoint", "0.05")
    key, row = await make_key(sqlite_url)
    oa = openai_client(server.url, key)
    r = await oa.responses.create(input="words=2000 delay=0.01", background=True)
    for _ in range(200):
        saved = await _row(sqlite_url, row.tenant_id, r.id)
        if saved is not None and len(saved.content) > 20:
            break
        await asyncio.sleep(0.05)
    server.kill()
    checkpointed = (await _row(sqlite_url, row.tenant_id, r.id)).content
    again = await launcher.scripted(sqlite_url)
    read = await openai_client(again.url, key).responses.retrieve(r.id)
    assert read.status == "incomplete" and read.incomplete_details is not None
    assert read.incomplete_details.reason == "interrupted"  # type: ignore[comparison-overlap]
    assert read.output_text == checkpointed and checkpointed.startswith("w0 w1")


async def test_resume_live_on_another_process_and_disconnect_does_not_stop(pg_pair: Served) -> None:
    a, b = pg_pair.servers
    key, row = await make_key(pg_pair.db)
    oa, ob = openai_client(a.url, key), openai_client(b.url, key)
    first = []
    stream = await oa.responses.create(input="words=60 delay=0.02", stream=True)
    async for e in stream:
        first.append(e)
        if len(first) == 10:
            break
    await stream.close()  # the client goes away: the run goes on
    rid = first[0].response.id  # type: ignore[union-attr]
    resumed = [e async for e in await ob.responses.retrieve(rid, stream=True, starting_after=first[-1].sequence_number)]
    events = first + resumed
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events[-4:]] == CLOSING
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.endswith("«fin»\n") and text == events[-1].response.output_text  # type: ignore[union-attr]
    assert (await _row(pg_pair.db, row.tenant_id, rid)).content == text
    assert (await ob.responses.retrieve(rid)).status == "completed"


def test_sync_client_params_reach_the_provider(sqlite_served: Served) -> None:
    import asyncio as aio

    key, _ = aio.run(make_key(sqlite_served.db))
    with openai.OpenAI(base_url=f"{sqlite_served.url}/v1", api_key=key, max_retries=0) as oa:
        r = oa.responses.create(input="echoparams", model="some-model", temperature=0.5, max_output_tokens=77,
                                metadata={"k": "v"}, store=True)
        assert r.output_text == "model=some-model temperature=0.5 max_tokens=77"
        assert r.metadata == {"k": "v"} and r.temperature == 0.5 and r.max_output_tokens == 77
        got = oa.responses.retrieve(r.id)
        assert got.output_text == r.output_text and got.model == "some-model" and got.metadata == {"k": "v"}
        with oa.responses.create(input="words=3", stream=True) as stream:
            kinds = [e.type for e in stream]
    assert kinds == PROLOGUE + ["response.output_text.delta"] * (len(kinds) - 8) + CLOSING


async def test_real_upstream_chain_usage_and_failure(fault_pair: FaultPair) -> None:
    """Through `mofa serve` with an OpenAI-compatible upstream (the loopback fault server records each request):
    the second response's upstream request carries the first turn, read from the database; usage is the api-call
    row's; a provider failure mid-stream ends with response.failed, the partial reply saved."""
    from tests.server.support import api_call_of
    from tests.support.fault_server import Reply

    db, (a, b), fault = fault_pair.db, fault_pair.servers, fault_pair.fault
    key, row = await make_key(db)
    oa, ob = openai_client(a.url, key), openai_client(b.url, key)
    fault.push(Reply(chunks=["Bon", "jour"]))
    first = await oa.responses.create(input="Say hello", model="up-model")
    assert first.output_text == "Bonjour" and first.model == "up-model"
    call = await api_call_of(db, row.tenant_id, await _row(db, row.tenant_id, first.id))
    assert first.usage is not None and call.total_tokens > 0
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.total_tokens) == (
        call.prompt_tokens, call.completion_tokens, call.total_tokens)
    fault.push(Reply(chunks=["ok"]))
    await ob.responses.create(input="Again", previous_response_id=first.id)  # the other process
    sent = fault.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent][-3:] == [("user", "Say hello"), ("assistant", "Bonjour"),
                                                              ("user", "Again")]

    fault.push(Reply(chunks=10, cut_after=3))
    events = [e async for e in await oa.responses.create(input="break", stream=True)]
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
    assert events[-1].response.error is not None
    rid = events[0].response.id  # type: ignore[union-attr]
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    saved = await _row(db, row.tenant_id, rid)
    assert saved.status == "error" and saved.content == streamed and streamed
    assert (await ob.responses.retrieve(rid)).status == "failed"


async def test_openai_agents_sdk_sessions_and_previous_response_id(in_app: InProcess) -> None:
    """The OpenAI Agents SDK unchanged, pointed at `mofa serve`: OpenAIConversationsSession keeps the history in a
    conversation (a session), and Runner.run_streamed chains by previous_response_id."""
    from agents import Agent, OpenAIConversationsSession, OpenAIResponsesModel, Runner, set_tracing_disabled
    from agents.stream_events import RawResponsesStreamEvent

    set_tracing_disabled(True)
    key, _ = await make_key(in_app.db)
    oa = openai_client(in_app.url, key, in_app.transport)
    agent = Agent(name="echoer", instructions="be brief", model=OpenAIResponsesModel("scripted-model", oa))
    session = OpenAIConversationsSession(openai_client=oa)
    first = await Runner.run(agent, "my name is Ada echo", session=session)
    assert first.final_output == "system: be brief\nuser: my name is Ada echo\n"
    second = await Runner.run(agent, "who am I? echo", session=session)
    assert "user: my name is Ada echo\nassistant: system: be brief" in second.final_output
    conv = await session._get_session_id()
    roles = [i.role async for i in oa.conversations.items.list(conv, order="asc")]  # type: ignore[union-attr]
    assert roles[:2] == ["user", "assistant"] and len(roles) >= 4

    streamed = Runner.run_streamed(agent, "again echo", previous_response_id=first.last_response_id)
    kinds = [e.data.type async for e in streamed.stream_events() if isinstance(e, RawResponsesStreamEvent)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "user: again echo" in str(streamed.final_output)
