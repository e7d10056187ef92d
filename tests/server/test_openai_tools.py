"""Tool calls through `mofa serve`'s Chat Completions, end to end: the official `openai` client (streamed and
not) and the OpenAI Agents SDK with a `@function_tool` agent, against a real `mofa serve` process on PostgreSQL
and on SQLite whose provider is the loopback fault server scripted with tool calls. It answers 400, as OpenAI
does, to a request whose tool messages do not fit its calls (``strict_tools``). The stored rows are read back:
roles, calls, results, order, and one api-call row per model call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, RunConfig, Runner, function_tool
from agents.result import RunResultBase
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from openai.types.responses import FunctionToolParam

from mofa_sdk.entities import LLMApiCall, Message, QueryFilter
from mofa_sdk.persistence import connect_store
from tests.server.support import Launcher, Server, auth, make_key, read_events
from tests.support.fault_server import FaultServer, Reply, ScriptedCall
from tests.support.llama_server import start_llama_server

SESSION = "X-Mofa-Session-Id"
WEATHER: ChatCompletionToolParam = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK: list[ChatCompletionMessageParam] = [{"role": "system", "content": "Use the tools."},
                                         {"role": "user", "content": "Weather in Paris and in Oslo?"}]


@dataclass
class ToolServed:
    db: str
    server: Server
    fault: FaultServer


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
async def served(request: pytest.FixtureRequest, shared_launcher: Launcher) -> AsyncIterator[ToolServed]:
    """`mofa serve` on PostgreSQL, then on SQLite, its provider the fault server (strict about tool messages)."""
    if request.param == "postgres":
        db = request.getfixturevalue("pg_url")
    else:
        db = f"sqlite:///{shared_launcher.tmp / f'tools-{uuid.uuid4().hex[:8]}.db'}"
    async with FaultServer(strict_tools=True) as fault:
        env = {"OPENAI_BASE_URL": fault.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        server = await shared_launcher.mofa_serve(db, env=env)
        try:
            yield ToolServed(db, server, fault)
        finally:
            server.stop()


def client_of(s: ToolServed, key: str, session: uuid.UUID | None = None) -> openai.AsyncOpenAI:
    headers = {SESSION: str(session)} if session is not None else None
    return openai.AsyncOpenAI(base_url=f"{s.server.url}/v1", api_key=key, max_retries=0, timeout=20,
                              default_headers=headers)


async def rows_of(db: str, tenant: uuid.UUID, session_id: uuid.UUID) -> tuple[list[Message], list[LLMApiCall]]:
    store = await connect_store(db)
    try:
        rows = await store.get_session_messages(tenant, session_id)
        calls = await store.query_api_calls(QueryFilter(tenant_id=tenant, session_id=session_id))
        return rows, calls
    finally:
        await store.close()


def shape(rows: list[Message]) -> list[tuple[str, str, list[str], str | None]]:
    """Each row as (role, text, its calls' ids, the call it answers)."""
    return [(r.role, r.content, [c.id for c in r.tool_calls], r.tool_call_id) for r in rows]


async def stream_calls(client: openai.AsyncOpenAI, messages: list[ChatCompletionMessageParam],
                       **kwargs: Any) -> tuple[list[dict[str, Any]], str | None, str]:
    """The streamed tool-call deltas (as dicts), the finish reason and the text."""
    deltas: list[dict[str, Any]] = []
    finish = None
    text = ""
    kwargs.setdefault("model", "m")
    stream = await client.chat.completions.create(messages=messages, tools=[WEATHER], stream=True, **kwargs)
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            deltas += [d.model_dump(exclude_none=True) for d in choice.delta.tool_calls or ()]
            finish = choice.finish_reason or finish
    return deltas, finish, text


def joined(deltas: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """The calls as a client assembles them from the deltas (by index)."""
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        call = calls.setdefault(d["index"], {"id": "", "name": "", "arguments": ""})
        call["id"] = d.get("id") or call["id"]
        function = d.get("function") or {}
        call["name"] = function.get("name") or call["name"]
        call["arguments"] += function.get("arguments") or ""
    return calls


async def test_single_call_streamed_round_trip(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    sid = uuid.uuid4()
    args = '{"city": "Paris"}'
    served.fault.push(Reply(chunks=[], tool_calls=[ScriptedCall("call_p", "get_weather", args, pieces=5)],
                            finish_reason="tool_calls"),
                      Reply(chunks=["Sunny ", "in Paris."]))
    async with client_of(served, key, sid) as client:
        deltas, finish, text = await stream_calls(client, ASK)
        assert finish == "tool_calls" and text == ""
        assert deltas[0] == {"index": 0, "id": "call_p", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}}
        assert all("id" not in d for d in deltas[1:]) and len(deltas) > 2  # the fragments, as they came
        assert joined(deltas) == {0: {"id": "call_p", "name": "get_weather", "arguments": args}}
        sent = served.fault.requests[-1].body
        assert sent["tools"][0]["function"]["name"] == "get_weather"
        answer: list[ChatCompletionMessageParam] = [
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": "call_p", "content": "sunny, 21 C"},
        ]
        deltas, finish, text = await stream_calls(client, answer)
        assert (deltas, finish, text) == ([], "stop", "Sunny in Paris.")
    sent = served.fault.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == args and sent[3]["tool_call_id"] == "call_p"
    rows, calls = await rows_of(served.db, row.tenant_id, sid)
    assert shape(rows) == [  # the client's system message is stored once, with its first request (threading)
        ("system", "Use the tools.", [], None),
        ("user", "Weather in Paris and in Oslo?", [], None),
        ("assistant", "", ["call_p"], None),
        ("tool", "sunny, 21 C", [], "call_p"),
        ("assistant", "Sunny in Paris.", [], None),
    ]
    assert rows[2].tool_calls[0].arguments == args and rows[2].status == "complete"
    assert rows[4].parent_message_id == rows[3].id  # the reply answers the results
    assert len(calls) == 2 and {c.response_message_id for c in calls} == {rows[2].id, rows[4].id}
    assert {c.status for c in calls} == {"success"}


async def test_parallel_calls_not_streamed_without_a_session_header(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    paris, oslo = '{"city": "Paris"}', '{"city": "Oslo"}'
    served.fault.push(Reply(chunks=[], finish_reason="tool_calls", tool_calls=[
        ScriptedCall("call_a", "get_weather", paris), ScriptedCall("call_b", "get_weather", oslo)]),
        Reply(chunks=["Both sunny."]))
    async with client_of(served, key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=ASK, tools=[WEATHER], parallel_tool_calls=True, tool_choice="auto")
        first = raw.parse()
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls" and message.content is None
        assert [(c.id, c.model_dump()["function"]) for c in message.tool_calls or ()] == [
            ("call_a", {"name": "get_weather", "arguments": paris}),
            ("call_b", {"name": "get_weather", "arguments": oslo})]
        sent = served.fault.requests[-1].body
        assert sent["parallel_tool_calls"] is True and sent["tool_choice"] == "auto"
        first_session = uuid.UUID(raw.headers[SESSION.lower()])
        answer: list[ChatCompletionMessageParam] = [
            *ASK, message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "sunny too"},
        ]
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=answer, tools=[WEATHER])
        assert raw.parse().choices[0].message.content == "Both sunny."
        second_session = uuid.UUID(raw.headers[SESSION.lower()])
    # no header: the resent history is threaded into the first request's session, which gets only the results
    assert second_session == first_session
    rows, calls = await rows_of(served.db, row.tenant_id, first_session)
    assert shape(rows) == [("system", "Use the tools.", [], None), ("user", "Weather in Paris and in Oslo?", [], None),
                           ("assistant", "", ["call_a", "call_b"], None), ("tool", "sunny", [], "call_a"),
                           ("tool", "sunny too", [], "call_b"), ("assistant", "Both sunny.", [], None)]
    assert len(calls) == 2 and {c.response_message_id for c in calls} == {rows[2].id, rows[5].id}


async def test_arguments_split_over_many_chunks_are_kept_verbatim(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    sid = uuid.uuid4()
    args = json.dumps({"city": "Zürich ✓", "note": "x" * 300}, ensure_ascii=False)
    call = ScriptedCall("call_z", "get_weather", args, pieces=60)
    served.fault.push(Reply(chunks=["Checking. "], finish_reason="tool_calls", tool_calls=[call]))
    async with client_of(served, key, sid) as client:
        deltas, finish, text = await stream_calls(client, ASK[1:])
    assert text == "Checking. " and finish == "tool_calls"
    # every fragment passed on as its own delta, in order, after the call's first chunk
    assert [d["function"]["arguments"] for d in deltas[1:]] == call.fragments() and len(deltas) > 50
    assert joined(deltas)[0]["arguments"] == args
    rows, _ = await rows_of(served.db, row.tenant_id, sid)
    assert rows[-1].content == "Checking. " and rows[-1].tool_calls[0].arguments == args
    # the native API shows the same run: text deltas, the call started, its fragments, the call done, the end
    async with httpx2.AsyncClient(timeout=20) as http, http.stream(
            "GET", f"{served.server.url}/v1/runs/{rows[-1].id}/events", headers=auth(key)) as response:
        events, _ = await read_events(response)
    kinds = [e.event for e in events]
    assert kinds[0] == "delta" and kinds[-2:] == ["tool_call.done", "done"]
    assert events[kinds.index("tool_call.started")].data == {"index": 0, "id": "call_z", "name": "get_weather"}
    assert "".join(e.data["arguments"] for e in events if e.event == "tool_call.arguments") == args
    assert events[-2].data == {"index": 0, "id": "call_z", "name": "get_weather", "arguments": args}
    assert [e.id for e in events] == list(range(1, len(events) + 1))


async def test_a_stream_cut_mid_call_saves_no_call(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    sid = uuid.uuid4()
    served.fault.push(Reply(chunks=[], finish_reason=None, tool_cut_after=3,
                            tool_calls=[ScriptedCall("call_c", "get_weather", '{"city": "Rome"}', pieces=6)]))
    deltas: list[dict[str, Any]] = []
    async with client_of(served, key, sid) as client:
        stream = await client.chat.completions.create(model="m", messages=ASK[1:], tools=[WEATHER], stream=True)
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                for choice in chunk.choices:
                    deltas += [d.model_dump(exclude_none=True) for d in choice.delta.tool_calls or ()]
    # what streamed before the cut: the call's start and two fragments; the call is not complete
    assert [d["index"] for d in deltas] == [0, 0, 0] and deltas[0]["id"] == "call_c"
    rows, calls = await rows_of(served.db, row.tenant_id, sid)
    # the user message is saved, and the reply's row (written with it, before the stream) ends an empty `error`;
    # a call cut mid-arguments is neither run nor saved (nothing to answer)
    assert shape(rows) == [("user", "Weather in Paris and in Oslo?", [], None), ("assistant", "", [], None)]
    assert rows[1].status == "error"
    assert len(calls) == 1 and calls[0].status == "failed" and calls[0].response_message_id == rows[1].id


async def test_results_that_answer_no_stored_call_are_refused_with_nothing_written(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    sid = uuid.uuid4()
    served.fault.push(Reply(chunks=[], finish_reason="tool_calls",
                            tool_calls=[ScriptedCall("call_1", "get_weather", '{"city": "Oslo"}')]))
    async with client_of(served, key, sid) as client:
        await client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER])
        before = len(served.fault.requests)
        other: list[ChatCompletionMessageParam] = [  # consistent on its own, but not with the session's calls
            *ASK, {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "?"}]
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="m", messages=other, tools=[WEATHER])
        assert "call_1" in bad.value.message and "call_9" in bad.value.message
        missing: list[ChatCompletionMessageParam] = [*other[:2], {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "user", "content": "never mind"}]
        with pytest.raises(openai.BadRequestError) as bad:  # a call left unanswered: the request's own fault
            await client.chat.completions.create(model="m", messages=missing, tools=[WEATHER])
        assert bad.value.body["param"] == "messages[3]"  # type: ignore[index]
    assert len(served.fault.requests) == before
    rows, calls = await rows_of(served.db, row.tenant_id, sid)
    assert [r.role for r in rows] == ["system", "user", "assistant"] and len(calls) == 1


async def test_agents_sdk_function_tool_agent_over_chat_completions(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    for streamed in (False, True):
        sid = uuid.uuid4()
        served.fault.push(
            Reply(chunks=[], finish_reason="tool_calls",
                  tool_calls=[ScriptedCall(f"call_{streamed}", "get_weather", '{"city":"Lima"}', pieces=3)]),
            Reply(chunks=["It is ", "sunny in Lima."]))
        client = client_of(served, key, sid)
        model = OpenAIChatCompletionsModel(model="m", openai_client=client)
        agent = Agent(name="weather", instructions="Use the tools.", model=model, tools=[get_weather])
        config = RunConfig(tracing_disabled=True)
        result: RunResultBase
        if streamed:
            live = Runner.run_streamed(agent, "Weather in Lima?", run_config=config)
            async for _ in live.stream_events():
                pass
            result = live
        else:
            result = await Runner.run(agent, "Weather in Lima?", run_config=config)
        await client.close()
        assert result.final_output == "It is sunny in Lima."
        rows, calls = await rows_of(served.db, row.tenant_id, sid)
        assert shape(rows) == [("system", "Use the tools.", [], None), ("user", "Weather in Lima?", [], None),
                               ("assistant", "", [f"call_{streamed}"], None),
                               ("tool", "sunny in Lima", [], f"call_{streamed}"),
                               ("assistant", "It is sunny in Lima.", [], None)]
        assert len(calls) == 2  # one api-call row per model call
    assert seen == ["Lima", "Lima"]


# -- the real llama.cpp server (chatml-function-calling), SmolLM2 forced to call the tool ---------------------
@pytest.fixture(scope="module")
async def llama_served(shared_launcher: Launcher) -> AsyncIterator[tuple[str, Server, str]]:
    server = start_llama_server(chat_format="chatml-function-calling")
    db = f"sqlite:///{shared_launcher.tmp / f'llama-tools-{uuid.uuid4().hex[:8]}.db'}"
    try:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-not-a-secret"}
        served = await shared_launcher.mofa_serve(db, env=env)
        try:
            yield db, served, server.model_id
        finally:
            served.stop()
    finally:
        server.stop()


async def test_real_model_makes_a_forced_call_through_chat_completions(
    llama_served: tuple[str, Server, str],
) -> None:
    db, server, model = llama_served
    key, row = await make_key(db)
    sid = uuid.uuid4()
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."}]
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=180,
                                  default_headers={SESSION: str(sid)}) as client:
        deltas, finish, _ = await stream_calls(
            client, question, model=model, max_tokens=60, temperature=0.0,
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert finish == "tool_calls"
    [call] = joined(deltas).values()
    assert call["name"] == "get_weather" and call["id"] and json.loads(call["arguments"]) == {"city": "Paris"}
    rows, calls = await rows_of(db, row.tenant_id, sid)
    assert shape(rows) == [("user", question[0]["content"], [], None), ("assistant", rows[1].content, [call["id"]],
                                                                         None)]
    assert rows[1].tool_calls[0].arguments == call["arguments"] and len(calls) == 1


# -- Responses and Conversations --------------------------------------------------------------------------------
RESPONSES_WEATHER: FunctionToolParam = {"type": "function", "name": "get_weather", "description": "The weather.",
                                     "parameters": WEATHER["function"]["parameters"], "strict": False}


async def test_responses_function_call_round_trip_and_conversation_items(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    args = '{"city": "Paris"}'
    served.fault.push(Reply(chunks=[], finish_reason="tool_calls",
                            tool_calls=[ScriptedCall("call_r", "get_weather", args, pieces=4)]),
                      Reply(chunks=["Sunny ", "in Paris."]))
    async with client_of(served, key) as client:
        stream = await client.responses.create(model="m", input="Weather in Paris?",
                                               tools=[RESPONSES_WEATHER], stream=True)
        events: list[dict[str, Any]] = [e.model_dump() async for e in stream]
        kinds = [e["type"] for e in events]
        assert kinds.count("response.function_call_arguments.delta") == 4
        added = next(e for e in events if e["type"] == "response.output_item.added"
                     and e["item"]["type"] == "function_call")
        assert {k: added["item"][k] for k in ("call_id", "name", "arguments")} == {
            "call_id": "call_r", "name": "get_weather", "arguments": ""}
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert done["arguments"] == args and done["item_id"] == added["item"]["id"]
        assert [e["sequence_number"] for e in events] == sorted({e["sequence_number"] for e in events})
        assert kinds[-1] == "response.completed"
        first = events[-1]["response"]
        assert first["status"] == "completed" and first["tools"][0]["name"] == "get_weather"
        [item] = first["output"]
        assert {k: item[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
            "type": "function_call", "call_id": "call_r", "name": "get_weather", "arguments": args,
            "status": "completed"}
        second = await client.responses.create(
            model="m", previous_response_id=first["id"], tools=[RESPONSES_WEATHER],
            input=[{"type": "function_call_output", "call_id": "call_r", "output": "sunny, 21 C"}])
        assert second.output_text == "Sunny in Paris."
        inputs = await client.responses.input_items.list(second.id)
        assert [(i.type, getattr(i, "call_id", None)) for i in inputs.data] == [("function_call_output", "call_r")]
        sent = served.fault.requests[-1].body["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == "call_r" and sent[2]["content"] == "sunny, 21 C"
        # the response's id is its reply row's: the row names the session
        [reply] = await rows_of_any(served.db, row.tenant_id, uuid.UUID(first["id"].removeprefix("resp_")))
        sid = reply.session_id
        rows, calls = await rows_of(served.db, row.tenant_id, sid)
        assert shape(rows) == [("user", "Weather in Paris?", [], None), ("assistant", "", ["call_r"], None),
                               ("tool", "sunny, 21 C", [], "call_r"), ("assistant", "Sunny in Paris.", [], None)]
        assert len(calls) == 2 and rows[1].id == reply.id and second.id == f"resp_{rows[3].id.hex}"
        # the conversation's items: the message, the call, its output, the answer
        page = await client.conversations.items.list(f"conv_{sid.hex}", order="asc")
        assert [(i.type, getattr(i, "call_id", None)) for i in page.data] == [
            ("message", None), ("function_call", "call_r"), ("function_call_output", "call_r"), ("message", None)]
        fc = await client.conversations.items.retrieve(str(page.data[1].id), conversation_id=f"conv_{sid.hex}")
        assert fc.model_dump(include={"type", "arguments"}) == {"type": "function_call", "arguments": args}
        conv = await client.conversations.create(items=[
            {"type": "message", "role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "rain"}])
        listed = await client.conversations.items.list(conv.id, order="asc")
        assert [i.type for i in listed.data] == ["message", "function_call", "function_call_output"]


async def rows_of_any(db: str, tenant: uuid.UUID, message_id: uuid.UUID) -> list[Message]:
    store = await connect_store(db)
    try:
        found = await store.get_message(tenant, message_id)
        return [] if found is None else [found]
    finally:
        await store.close()


async def test_responses_output_for_an_unknown_call_is_refused(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    served.fault.push(Reply(chunks=[], finish_reason="tool_calls",
                            tool_calls=[ScriptedCall("call_k", "get_weather", "{}")]))
    async with client_of(served, key) as client:
        first = await client.responses.create(model="m", input="Weather?", tools=[RESPONSES_WEATHER])
        before = len(served.fault.requests)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="m", previous_response_id=first.id, input=[
                {"type": "function_call_output", "call_id": "call_other", "output": "?"}])
        assert "call_other" in bad.value.message and "call_k" in bad.value.message
    assert len(served.fault.requests) == before
    [reply] = await rows_of_any(served.db, row.tenant_id, uuid.UUID(first.id.removeprefix("resp_")))
    rows, _ = await rows_of(served.db, row.tenant_id, reply.session_id)
    assert [r.role for r in rows] == ["user", "assistant"]


async def test_agents_sdk_function_tool_agent_over_responses(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    for streamed in (False, True):
        served.fault.push(
            Reply(chunks=[], finish_reason="tool_calls",
                  tool_calls=[ScriptedCall(f"rc_{streamed}", "get_weather", '{"city":"Quito"}', pieces=3)]),
            Reply(chunks=["It is ", "sunny in Quito."]))
        client = client_of(served, key)
        model = OpenAIResponsesModel(model="m", openai_client=client)
        agent = Agent(name="weather", instructions="Use the tools.", model=model, tools=[get_weather])
        config = RunConfig(tracing_disabled=True)
        result: RunResultBase
        if streamed:
            live = Runner.run_streamed(agent, "Weather in Quito?", run_config=config)
            async for _ in live.stream_events():
                pass
            result = live
        else:
            result = await Runner.run(agent, "Weather in Quito?", run_config=config)
        await client.close()
        assert result.final_output == "It is sunny in Quito."
        last_id = str(result.raw_responses[-1].response_id)
        [last] = await rows_of_any(served.db, row.tenant_id, uuid.UUID(last_id.removeprefix("resp_")))
        rows, calls = await rows_of(served.db, row.tenant_id, last.session_id)
        # the SDK resends its whole input: threaded into the first call's session, which holds the round once
        assert shape(rows) == [("user", "Weather in Quito?", [], None), ("assistant", "", [f"rc_{streamed}"], None),
                               ("tool", "sunny in Quito", [], f"rc_{streamed}"),
                               ("assistant", "It is sunny in Quito.", [], None)]
        assert len(calls) == 2  # one api-call row per model call
    assert seen == ["Quito", "Quito"]


async def test_image_parts_are_sent_and_stored_as_parts(served: ToolServed) -> None:
    key, row = await make_key(served.db)
    sid = uuid.uuid4()
    image = "data:image/png;base64,iVBORw0KGgo="
    served.fault.push(Reply(chunks=["A dot."]))
    async with client_of(served, key, sid) as client:
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is "}, {"type": "text", "text": "this?"},
            {"type": "image_url", "image_url": {"url": image, "detail": "low"}}]}])
    assert reply.choices[0].message.content == "A dot."
    sent = served.fault.requests[-1].body["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image, "detail": "low"}} in sent
    assert "".join(p.get("text", "") for p in sent) == "What is this?"
    rows, _ = await rows_of(served.db, row.tenant_id, sid)
    assert rows[0].content == "What is this?"
    assert [(p.type, p.text, p.url, p.detail) for p in rows[0].parts] == [
        ("text", "What is this?", None, None), ("image", None, image, "low")]
