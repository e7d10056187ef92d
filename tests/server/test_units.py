"""The service's pure parts: NOTIFY payload splitting, bounded subscriptions, the log of a reply row, SSE framing."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import Message
from mofa_sdk.server.http import sse
from mofa_sdk.server.runs import (
    SUBSCRIPTION_LIMIT,
    Deltas,
    Heartbeat,
    LocalBus,
    TextDeltaEvent,
    decode,
    delta_messages,
    deltas_of_row,
    encode,
    terminal_event,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=3000), min_size=1, max_size=6))
def test_event_messages_fit_a_notify_payload_and_rejoin(texts: list[str]) -> None:
    texts = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]  # what a str delta can hold
    events = [TextDeltaEvent(n, t) for n, t in enumerate(texts, start=1)]
    messages = delta_messages(events)
    rejoined: dict[int, str] = {}
    for m in messages:
        payload = uuid.uuid4().hex + encode(m, 10**12)
        assert len(payload.encode()) < 8000
        back = decode(payload[32:])
        assert back == m  # the codec round-trips
        assert isinstance(back, Deltas)
        for f in back.fragments:
            rejoined[f.n] = rejoined.get(f.n, "") + f.text
    assert [rejoined[e.n] for e in events] == texts


def test_long_deltas_of_one_repeated_character_are_fragments_in_order() -> None:
    big = "\x01" * 5000 + "é" * 5000  # JSON escapes \x01 to 6 bytes, é is 2
    messages = delta_messages([TextDeltaEvent(7, big)])
    entries = [f for m in messages for f in m.fragments]
    assert [f.more for f in entries] == [True] * (len(entries) - 1) + [False]
    assert "".join(f.text for f in entries) == big and {f.n for f in entries} == {7}


async def test_a_subscription_that_falls_behind_is_marked_overflowed() -> None:
    bus = LocalBus()
    run = uuid.uuid4()
    sub = bus.subscribe(run)
    for i in range(SUBSCRIPTION_LIMIT + 5):
        bus._deliver(run, Heartbeat(i))
    assert sub.overflowed  # the follower must resync from the log: nothing was kept past the bound
    assert len(sub._queue) < SUBSCRIPTION_LIMIT
    sub.close()
    assert run not in bus._subs


def test_deltas_of_a_row_are_slices_at_the_recorded_offsets() -> None:
    row = Message(session_id=uuid.uuid4(), tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), role="assistant",
                  content="Hello, wörld 🚀!", delta_ends=[5, 7, 13, 15])
    assert [(e.n, e.text) for e in deltas_of_row(row, 0)] == [
        (1, "Hello"), (2, ", "), (3, "wörld "), (4, "🚀!")]
    assert [e.n for e in deltas_of_row(row, 2)] == [3, 4] and deltas_of_row(row, 9) == []
    plain = row.model_copy(update={"delta_ends": None})  # a reply written without offsets: one event
    assert [e.text for e in deltas_of_row(plain, 0)] == [row.content]


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
    """The app's own handlers, a 422 (OpenAI's 400) and an unexpected exception, on an OpenAI path and not:
    the handlers alone shape them (no middleware rewrites a body)."""
    import httpx2
    from fastapi import FastAPI

    from mofa_sdk.server.http import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/models/bug")
    @app.get("/v1/native/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/models/number/{n}")
    async def number(n: int) -> int:
        return n

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


def test_a_terminal_event_and_every_bus_message_round_trip_their_codecs() -> None:
    from mofa_sdk.server.runs import Control, Ended, Resync, decode_control, encode_control, event_json, event_of_json

    user, reply, call = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    done = terminal_event(5, "complete", user_message_id=user, assistant_message_id=reply)
    failed = terminal_event(9, "interrupted", user_message_id=None, assistant_message_id=reply, code="interrupted",
                            message="gone", saved_events=7)
    for event in (done, failed, TextDeltaEvent(3, "é\n")):
        assert event_of_json(event.n, event.kind, event_json(event)) == event
    assert done.kind == "done" and done.error is None
    assert failed.kind == "error" and event_json(failed)["error"] == {"code": "interrupted", "message": "gone"}
    assert event_json(failed)["saved_events"] == 7 and event_json(done)["message_ids"]["user"] == str(user)
    from mofa_sdk.server.runs import ApiCallFacts, Usage

    counted = done.__class__(5, "complete", user, reply, ApiCallFacts(call, 12, 3), Usage(1, 2, 3), None, None)
    for message in (Ended(counted), Ended(failed), Heartbeat(4), Resync()):
        assert decode(encode(message, 1)) == message
    control = Control("cancel", uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 12)
    assert decode_control(encode_control(control, 3)) == control


def test_the_run_engine_imports_no_web_framework_and_routes_import_no_routes() -> None:
    """The layering of ``server/``: runs/ knows no HTTP; an API's routes modules never import each other."""
    import ast
    from pathlib import Path

    import mofa_sdk.server as server

    root = Path(server.__file__).parent

    def imports(path: Path) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                found.add("." * node.level + (node.module or ""))
        return found

    for path in (root / "runs").glob("*.py"):
        web = {m for m in imports(path) if m.split(".")[0] in ("fastapi", "starlette", "uvicorn") or "http" in m}
        assert not web, f"{path.name} imports {web}"
    routes = {"_chat", "_conversations", "_responses", "_responses_ws"}
    #: the same API over another transport: WebSocket mode streams what the Responses routes start
    same_api = {"_responses_ws.py": {"_responses"}}
    for path in (root / "api" / "openai").glob("*.py"):
        if path.name == "__init__.py":  # it assembles the router, it is no route
            continue
        allowed = same_api.get(path.name, set())
        assert not {m for m in imports(path) if m.lstrip(".") in routes - allowed}, path.name


def test_library_errors_of_the_engine_map_to_their_statuses_and_codes() -> None:
    """The run engine raises library errors only; the HTTP layer gives them a status and a code in one place."""
    from mofa_sdk.errors import AgentUnavailableError, ConfigError, NotFoundError, ServiceUnavailableError
    from mofa_sdk.server.http import error_response, status_of

    assert status_of(ServiceUnavailableError("no provider", code="no_provider")) == 503
    assert status_of(AgentUnavailableError("disabled")) == 409
    assert status_of(NotFoundError("x")) == 404 and status_of(ConfigError("x")) == 422
    assert ServiceUnavailableError("x", code="no_provider").code == "no_provider"
    native = json.loads(bytes(error_response("/v1/sessions", 422, None, "bad").body))
    openai = json.loads(bytes(error_response("/v1/chat/completions", 422, None, "bad").body))
    assert native["error"]["code"] == "invalid_request" and openai["error"]["code"] == "invalid_request"
    assert error_response("/v1/chat/completions", 422, None, "bad").status_code == 400
