"""The service's pure parts: NOTIFY payload splitting, bounded subscriptions, the log of a reply row, SSE framing."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import Message
from mofa_sdk.server._log import deltas_of_row, terminal_event
from mofa_sdk.server._notify import SUBSCRIPTION_LIMIT, LocalBus, event_messages
from mofa_sdk.server._sse import sse


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=3000), min_size=1, max_size=6))
def test_event_messages_fit_a_notify_payload_and_rejoin(texts: list[str]) -> None:
    texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]  # what a str delta can hold
    events = list(enumerate(texts, start=1))
    messages = event_messages(events)
    rejoined: dict[int, str] = {}
    for m in messages:
        payload = uuid.uuid4().hex + json.dumps({**m, "s": 10**12}, ensure_ascii=False, separators=(",", ":"))
        assert len(payload.encode()) < 8000
        for n, piece, _more in m["e"]:
            rejoined[n] = rejoined.get(n, "") + piece
    assert [rejoined[n] for n, _ in events] == texts


def test_long_deltas_of_one_repeated_character_are_fragments_in_order() -> None:
    big = "\x01" * 5000 + "é" * 5000  # JSON escapes \x01 to 6 bytes, é is 2
    messages = event_messages([(7, big)])
    entries = [e for m in messages for e in m["e"]]
    assert [e[2] for e in entries] == [1] * (len(entries) - 1) + [0]
    assert "".join(e[1] for e in entries) == big


async def test_a_subscription_that_falls_behind_is_marked_overflowed() -> None:
    bus = LocalBus()
    run = uuid.uuid4()
    sub = bus.subscribe(run)
    for i in range(SUBSCRIPTION_LIMIT + 5):
        bus._deliver(run, {"k": "hb", "n": i})
    assert sub.overflowed  # the follower must resync from the log: nothing was kept past the bound
    assert len(sub._queue) < SUBSCRIPTION_LIMIT
    sub.close()
    assert run not in bus._subs


def test_deltas_of_a_row_are_slices_at_the_recorded_offsets() -> None:
    row = Message(session_id=uuid.uuid4(), tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), role="assistant",
                  content="Hello, wörld 🚀!", delta_ends=[5, 7, 13, 15])
    assert [(e.n, e.data["text"]) for e in deltas_of_row(row, 0)] == [
        (1, "Hello"), (2, ", "), (3, "wörld "), (4, "🚀!")]
    assert [e.n for e in deltas_of_row(row, 2)] == [3, 4] and deltas_of_row(row, 9) == []
    plain = row.model_copy(update={"delta_ends": None})  # a reply written without offsets: one event
    assert [e.data["text"] for e in deltas_of_row(plain, 0)] == [row.content]


def test_sse_frames_cannot_be_split_by_their_text() -> None:
    frame = sse("delta", {"text": "a\n\nevent: done\ndata: x\r\n"}, 3).decode()
    assert frame.count("\n\n") == 1 and frame.endswith("\n\n")
    lines = frame.splitlines()
    assert lines[0] == "id: 3" and lines[1] == "event: delta"
    assert json.loads(lines[2].removeprefix("data: "))["text"] == "a\n\nevent: done\ndata: x\r\n"
    done = terminal_event(4, "cancelled", user_message_id=None, assistant_message_id=None)
    assert done.kind == "done" and terminal_event(4, "error", user_message_id=None,
                                                   assistant_message_id=None).kind == "error"


def test_settings_never_show_the_database_password() -> None:
    from mofa_sdk.server import ServeConfig

    config = ServeConfig(database_url="postgresql://app:s3cr3t-pw@db.internal/mofa")
    assert "s3cr3t-pw" not in repr(config) and "s3cr3t-pw" not in str(config)


async def test_openai_routes_answer_every_error_in_openai_shape_even_a_bug() -> None:
    """The app's own handlers, a 422 (OpenAI's 400) and an unexpected exception, on an OpenAI path and not."""
    import httpx2
    from fastapi import FastAPI

    from mofa_sdk.server._chat_shapes import OpenAIErrorMiddleware
    from mofa_sdk.server._errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/models/bug")
    @app.get("/v1/native/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/models/number/{n}")
    async def number(n: int) -> int:
        return n

    app.add_middleware(OpenAIErrorMiddleware)
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/v1/models/bug")
        assert r.status_code == 500 and r.json() == {"error": {
            "message": "internal server error", "type": "server_error", "param": None, "code": "internal"}}
        r = await client.get("/v1/models/number/x")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await client.get("/v1/native/bug")
        assert r.status_code == 500 and r.json() == {"error": {  # native: its own code, OpenAI's type and param
            "code": "internal", "message": "internal server error", "type": "server_error", "param": None}}
