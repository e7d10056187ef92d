"""The Open Responses compliance suite (tests/compliance/openresponses, a pinned copy of the spec's own tests)
run with Node against a real ``mofa serve`` on PostgreSQL whose provider is the scripted fault server: every
compliance test must pass, HTTP and WebSocket alike."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mofa_sdk.persistence import connect_store
from tests.server.support import ROOT, FaultPair, auth, make_key, openai_client
from tests.support.fault_server import Reply, ScriptedCall

SUITE = ROOT / "tests" / "compliance" / "openresponses"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (SUITE / "node_modules" / "tsx").is_dir():
        raise AssertionError("the compliance suite needs Node 20 and its modules: run `make setup` "
                             f"(npm ci in {SUITE.relative_to(ROOT)})")
    return node


async def run_suite(base_url: str, key: str, model: str) -> dict[str, Any]:
    """The suite's JSON report (``--json``) of one run against ``base_url``."""
    cli = Path("node_modules") / "tsx" / "dist" / "cli.mjs"
    proc = await asyncio.create_subprocess_exec(
        _node(), str(cli), "bin/compliance-test.ts", "--base-url", f"{base_url}/v1", "--model", model, "--json",
        cwd=SUITE,
        # tsx runs the suite in a child node: the WebSocket client (behind a flag on Node 20) is asked for there
        env={**os.environ, "OPENRESPONSES_API_KEY": key, "NODE_OPTIONS": "--experimental-websocket",
             "NODE_NO_WARNINGS": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    try:
        report: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"the suite printed no report (exit {proc.returncode}):\n{out.decode()[-3000:]}\n"
                             f"{err.decode()[-3000:]}") from None
    return report


async def test_open_responses_compliance_suite(fault_pair: FaultPair) -> None:
    key, _ = await make_key(fault_pair.db)
    # the suite's requests come concurrently: the one that declares a tool is answered with a call of it
    call = ScriptedCall("call_weather_1", "get_weather", '{"location": "San Francisco, CA"}')
    fault_pair.fault.with_tools = Reply(chunks=0, tool_calls=[call], finish_reason="tool_calls")
    try:
        report = await run_suite(fault_pair.url, key, "gpt-4o-mini")
    finally:
        fault_pair.fault.with_tools = None
    results = {r["id"]: r for r in report["results"]}
    assert len(results) == 17, sorted(results)  # the pinned suite has 17 tests: all ran, none was skipped
    assert not [r for r in results.values() if r["status"] == "skipped"]
    failed = {i: r.get("errors") for i, r in results.items() if r["status"] != "passed"}
    print("compliance:", {i: r["status"] for i, r in sorted(results.items())})
    assert not failed, "compliance tests failed:\n" + "\n".join(f"- {i}: {e}" for i, e in sorted(failed.items()))


@pytest.mark.parametrize("bad_key", ["sk-not-a-key"])
async def test_the_suite_fails_against_a_refusing_service(fault_pair: FaultPair, bad_key: str) -> None:
    """The harness can fail: with a key the service refuses, every test that talks to it fails."""
    report = await run_suite(fault_pair.url, bad_key, "gpt-4o-mini")
    statuses = {r["id"]: r["status"] for r in report["results"]}
    assert statuses["basic-response"] == "failed" and statuses["websocket-response"] == "failed"
    assert report["summary"]["failed"] >= 10


# -- the pieces the suite checks, each asserted directly ----------------------------------------------------
async def test_the_response_object_carries_every_required_field(fault_pair: FaultPair) -> None:
    """The numbers in effect (what the request set, else the defaults the provider applies), the echoed
    options, completed_at; the sampling fields and the output format went upstream."""
    db, server, fault = fault_pair.db, fault_pair.servers[0], fault_pair.fault
    key, _ = await make_key(db)
    oa = openai_client(server.url, key)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fault.push(Reply(chunks=['{"n": ', "4}"]))
    text: Any = {"format": {"type": "json_schema", "name": "num", "schema": schema, "strict": True}}
    r = await oa.responses.create(
        model="fields-model", input="four as JSON", temperature=0.25, top_p=0.5, extra_body={"presence_penalty": 0.5},
        safety_identifier="user-7", prompt_cache_key="cache-1", max_tool_calls=3,
        text=text)
    sent = fault.requests[-1].body
    assert (sent["temperature"], sent["top_p"], sent["presence_penalty"]) == (0.25, 0.5, 0.5)
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "num", "schema": schema, "strict": True}}
    assert r.status == "completed" and r.output_text == '{"n": 4}'
    got = r.model_dump()  # the penalties are not attributes of the client's Response type
    assert [got[k] for k in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs")] == [
        0.25, 0.5, 0.5, 0, 0]
    assert (r.safety_identifier, r.prompt_cache_key, r.max_tool_calls, r.service_tier) == ("user-7", "cache-1", 3,
                                                                                           "default")
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
    assert r.completed_at is not None and r.completed_at >= r.created_at
    assert r.reasoning is not None and r.reasoning.effort is None
    again = await oa.responses.retrieve(r.id)  # read back from the rows: the same fields
    assert (again.temperature, again.top_p, again.prompt_cache_key) == (0.25, 0.5, "cache-1")
    assert again.completed_at is not None and abs(again.completed_at - r.completed_at) <= 1

    fault.push(Reply(chunks=["x"]))
    plain = await oa.responses.create(model="fields-model", input="defaults")
    assert "top_p" not in fault.requests[-1].body and "response_format" not in fault.requests[-1].body
    assert (plain.temperature, plain.top_p, plain.model_dump()["presence_penalty"]) == (1.0, 1.0, 0)
    assert plain.text is not None and plain.text.format is not None and plain.text.format.type == "text"
    assert plain.safety_identifier is None and plain.max_tool_calls is None


async def test_a_bad_output_format_is_a_400_naming_the_field(fault_pair: FaultPair) -> None:
    key, _ = await make_key(fault_pair.db)
    before = len(fault_pair.fault.requests)
    async with httpx2.AsyncClient(timeout=20) as http:
        r = await http.post(f"{fault_pair.url}/v1/responses", headers=auth(key), json={
            "model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "no schema"}}})
        logprobs = await http.post(f"{fault_pair.url}/v1/responses", headers=auth(key), json={
            "model": "m", "input": "hi", "top_logprobs": 3})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("text.format")
    assert logprobs.status_code == 400 and logprobs.json()["error"]["param"] == "top_logprobs"
    assert len(fault_pair.fault.requests) == before  # nothing went upstream


async def test_every_responses_stream_ends_with_done_replays_too(fault_pair: FaultPair) -> None:
    key, _ = await make_key(fault_pair.db)
    fault_pair.fault.push(Reply(chunks=["a", "b"]))
    async with httpx2.AsyncClient(timeout=20) as http:
        live = await http.post(f"{fault_pair.url}/v1/responses", headers=auth(key),
                               json={"model": "m", "input": "hi", "stream": True})
        rid = json.loads(live.text.split("data: ", 2)[1].split("\n", 1)[0])["response"]["id"]
        replay = await http.get(f"{fault_pair.url}/v1/responses/{rid}", params={"stream": "true"},
                                headers=auth(key))
        tail = await http.get(f"{fault_pair.url}/v1/responses/{rid}", params={"stream": "true",
                                                                              "starting_after": 6},
                              headers=auth(key))
    for body in (live.text, replay.text, tail.text):
        assert body.endswith("data: [DONE]\n\n") and body.count("[DONE]") == 1
        assert body.index("response.completed") < body.index("[DONE]")


async def test_system_and_developer_items_reach_the_model_and_stay(fault_pair: FaultPair) -> None:
    """In a response's input and in a conversation's items: saved, sent in place, and sent again on the
    next turn of the conversation (read from the database)."""
    db, fault = fault_pair.db, fault_pair.fault
    key, _ = await make_key(db)
    oa = openai_client(fault_pair.url, key)
    await oa.responses.create(model="m", input=[
        {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "hello"}])
    assert [(m["role"], m["content"]) for m in fault.requests[-1].body["messages"]] == [
        ("system", "Answer in French."), ("user", "hello")]
    conv = await oa.conversations.create(items=[{"type": "message", "role": "system", "content": "Be a pirate."}])
    await oa.responses.create(model="m", input="first", conversation=conv.id)
    assert [m["role"] for m in fault.requests[-1].body["messages"]] == ["system", "user"]
    assert fault.requests[-1].body["messages"][0]["content"] == "Be a pirate."
    await oa.responses.create(model="m", input="second", conversation=conv.id)
    assert [m["role"] for m in fault.requests[-1].body["messages"]] == ["system", "user", "assistant", "user"]
    items = [i async for i in oa.conversations.items.list(conv.id, order="asc")]
    assert [i.role for i in items][:1] == ["system"]  # type: ignore[union-attr]


async def test_input_parts_it_cannot_take_are_refused_naming_the_part(fault_pair: FaultPair) -> None:
    """Never dropped silently: a part by file id, or an image outside a user message, is a 400 naming it, with
    nothing written or sent."""
    key, row = await make_key(fault_pair.db)
    before = len(fault_pair.fault.requests)
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    by_id = {"type": "input_file", "file_id": "file-123"}
    async with httpx2.AsyncClient(timeout=20) as http:
        answers = [await http.post(f"{fault_pair.url}{path}", headers=auth(key), json=body) for path, body in [
            ("/v1/responses", {"model": "m", "input": [{"role": "assistant", "content": [image]},
                                                       {"role": "user", "content": "what was it?"}]}),
            ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [by_id]}]}),
            ("/v1/conversations", {"items": [{"role": "user", "content": [{**image, "image_url": "ftp://x"}]}]}),
        ]]
    assert [a.status_code for a in answers] == [400, 400, 400]
    params = [a.json()["error"]["param"] for a in answers]
    assert params == ["input[0].content[0]", "input[0].content[0].file_id", "items[0].content[0].image_url"]
    assert "input_image" in answers[0].json()["error"]["message"]
    assert len(fault_pair.fault.requests) == before
    store = await connect_store(fault_pair.db)
    try:
        assert await store.get_user_sessions(row.tenant_id, row.user_id) == []
    finally:
        await store.close()


async def test_input_images_are_sent_and_stored_as_parts(fault_pair: FaultPair) -> None:
    """``input_image`` parts of the last user message and of earlier items reach the provider as Chat
    Completions image parts, are stored as the rows' parts, and list back as ``input_image`` items."""
    key, row = await make_key(fault_pair.db)
    oa = openai_client(fault_pair.url, key)
    first = "data:image/png;base64,iVBORw0KGgo="
    second = "https://example.com/cat.png"
    given: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": first}]},
        {"role": "assistant", "content": "seen"},
        {"role": "user", "content": [{"type": "input_text", "text": "and this?"},
                                     {"type": "input_image", "image_url": second, "detail": "low"}]}]
    r = await oa.responses.create(model="m", input=given)
    assert r.status == "completed"
    sent = fault_pair.fault.requests[-1].body["messages"]
    assert sent[0]["content"] == [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": first}}]
    assert sent[-1]["content"] == [{"type": "text", "text": "and this?"},
                                   {"type": "image_url", "image_url": {"url": second, "detail": "low"}}]
    items = [i.model_dump(exclude_none=True) async for i in oa.responses.input_items.list(r.id, order="asc")]
    assert [i["content"][-1] for i in items if i["role"] == "user"] == [
        {"type": "input_image", "image_url": first, "detail": "auto"},
        {"type": "input_image", "image_url": second, "detail": "low"}]
    store = await connect_store(fault_pair.db)
    try:
        (session,) = await store.get_user_sessions(row.tenant_id, row.user_id)
        rows = await store.get_session_messages(row.tenant_id, session.id)
        assert [(m.role, m.content, [p.url for p in m.parts if p.type == "image"]) for m in rows] == [
            ("user", "a", [first]), ("assistant", "seen", []), ("user", "and this?", [second]),
            ("assistant", rows[-1].content, [])]
    finally:
        await store.close()


async def test_input_files_are_sent_inline_and_stored_as_file_parts(fault_pair: FaultPair) -> None:
    """``input_file`` with ``file_data`` reaches the provider as Chat Completions' ``file`` part and is stored
    as a file part; by URL it is a 400 naming ``file_url`` (the provider takes content; nothing is fetched)."""
    key, row = await make_key(fault_pair.db)
    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    doc = {"type": "input_file", "filename": "a.pdf", "file_data": pdf}
    async with httpx2.AsyncClient(timeout=20) as http:
        ok = await http.post(f"{fault_pair.url}/v1/responses", headers=auth(key), json={"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "summarise"}, doc]}]})
        by_url = await http.post(f"{fault_pair.url}/v1/responses", headers=auth(key), json={"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "summarise"},
                                         {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]})
        listed = await http.get(f"{fault_pair.url}/v1/responses/{ok.json()['id']}/input_items", headers=auth(key))
    assert ok.status_code == 200 and ok.json()["status"] == "completed"
    assert fault_pair.fault.requests[-1].body["messages"][-1]["content"] == [
        {"type": "text", "text": "summarise"}, {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}}]
    assert by_url.status_code == 400 and by_url.json()["error"]["param"] == "input[0].content[1].file_url"
    assert listed.json()["data"][0]["content"][1] == doc
    store = await connect_store(fault_pair.db)
    try:
        (session,) = await store.get_user_sessions(row.tenant_id, row.user_id)
        (user, _) = await store.get_session_messages(row.tenant_id, session.id)
        assert [p.model_dump() for p in user.parts] == [{"type": "text", "text": "summarise"},
                                                       {"type": "file", "filename": "a.pdf", "url": pdf}]
    finally:
        await store.close()
