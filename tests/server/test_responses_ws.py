"""WebSocket mode of ``/v1/responses`` through the official ``openai`` client (``responses.connect()``)
against real ``mofa serve`` processes on PostgreSQL: several responses on one socket, continuation by
previous_response_id, errors that leave the socket open, store:false continuable only on its socket, the
bearer key checked at the handshake; every response's rows are in the database."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mofa_sdk.persistence import connect_store
from tests.server.support import FaultPair, make_key, openai_client
from tests.support.fault_server import Reply

TERMINAL = ("response.completed", "response.failed", "response.incomplete", "error")


async def _turn(conn: Any, **request: Any) -> list[Any]:
    """Send one response.create and read its events up to the terminal one."""
    await conn.response.create(**request)
    events = []
    async for event in conn:
        events.append(event)
        if event.type in TERMINAL:
            return events
    raise AssertionError("the socket closed before a terminal event")


async def _rows(db: str, tenant: uuid.UUID, response_id: str) -> list[tuple[str, str]]:
    store = await connect_store(db)
    try:
        reply = await store.get_message(tenant, uuid.UUID(response_id.removeprefix("resp_")))
        assert reply is not None
        return [(m.role, m.content) for m in await store.get_session_messages(tenant, reply.session_id)]
    finally:
        await store.close()


async def test_several_responses_and_a_continuation_on_one_socket(fault_pair: FaultPair) -> None:
    db, fault = fault_pair.db, fault_pair.fault
    key, row = await make_key(db)
    oa = openai_client(fault_pair.url, key)
    fault.push(Reply(chunks=["OK", "."]), Reply(chunks=["cob", "alt"]), Reply(chunks=["two"]))
    async with oa.responses.connect() as conn:
        first = await _turn(conn, model="ws-model", input="Remember cobalt. Reply OK.")
        assert [e.type for e in first][:2] == ["response.created", "response.in_progress"]
        assert "".join(e.delta for e in first if e.type == "response.output_text.delta") == "OK."
        done = first[-1]
        assert done.type == "response.completed" and done.response.output_text == "OK."
        assert [e.sequence_number for e in first] == list(range(len(first)))
        second = await _turn(conn, model="ws-model", input="The word?", previous_response_id=done.response.id)
        assert second[-1].type == "response.completed" and second[-1].response.output_text == "cobalt"
        assert second[-1].response.previous_response_id == done.response.id
        # the continuation was sent the first turn, read from the database
        assert [m["content"] for m in fault.requests[-1].body["messages"]] == [
            "Remember cobalt. Reply OK.", "OK.", "The word?"]
        other = await _turn(conn, model="ws-model", input="A new chain")
        assert other[-1].response.output_text == "two"
    assert await _rows(db, row.tenant_id, second[-1].response.id) == [
        ("user", "Remember cobalt. Reply OK."), ("assistant", "OK."), ("user", "The word?"), ("assistant", "cobalt")]
    assert await _rows(db, row.tenant_id, other[-1].response.id) == [("user", "A new chain"), ("assistant", "two")]


async def test_errors_keep_the_socket_and_store_false_stays_on_its_socket(fault_pair: FaultPair) -> None:
    db, fault = fault_pair.db, fault_pair.fault
    key, _ = await make_key(db)
    oa = openai_client(fault_pair.url, key)
    async with oa.responses.connect() as conn:
        bad = await _turn(conn, model="ws-model", input="hi", temperature=7)
        assert bad[-1].type == "error" and bad[-1].error.param == "temperature"
        fault.push(Reply(chunks=["kept"]))
        unstored = await _turn(conn, model="ws-model", input="one", store=False)
        rid = unstored[-1].response.id
        assert unstored[-1].response.store is False
        fault.push(Reply(chunks=["here"]))
        same = await _turn(conn, model="ws-model", input="two", previous_response_id=rid, store=False)
        assert same[-1].type == "response.completed"
    async with oa.responses.connect() as again:
        missing = await _turn(again, model="ws-model", input="three", previous_response_id=rid)
        assert missing[-1].type == "error"
        assert missing[-1].error.code == "previous_response_not_found"


async def test_the_handshake_needs_a_valid_key(fault_pair: FaultPair) -> None:
    oa = openai_client(fault_pair.url, "sk-not-a-key")
    before = len(fault_pair.fault.requests)
    with pytest.raises(InvalidStatus) as caught:  # refused before it is accepted: nothing runs
        async with oa.responses.connect(max_retries=0) as conn:
            await _turn(conn, model="ws-model", input="hi")
    assert caught.value.response.status_code == 403
    assert len(fault_pair.fault.requests) == before


async def test_messages_that_are_not_a_response_create_get_an_error_and_the_socket_goes_on(
        fault_pair: FaultPair) -> None:
    """A raw client (the websockets library): not JSON, a binary frame, another message type, then a real
    request on the same socket."""
    key, _ = await make_key(fault_pair.db)
    url = fault_pair.url.replace("http://", "ws://") + "/v1/responses"
    fault_pair.fault.push(Reply(chunks=["fine"]))
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        answers = []
        frames: list[str | bytes] = ["not json", b"\xff\xfe", json.dumps({"type": "response.cancel"})]
        for frame in frames:
            await ws.send(frame)
            answers.append(json.loads(await ws.recv()))
        assert [(a["type"], a["status"]) for a in answers] == [("error", 400)] * 3
        assert answers[2]["error"]["param"] == "type" and "response.cancel" in answers[2]["error"]["message"]
        await ws.send(json.dumps({"type": "response.create", "model": "ws-model", "input": "hi", "stream": True}))
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != "response.completed":
            events.append(json.loads(await ws.recv()))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "fine"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
