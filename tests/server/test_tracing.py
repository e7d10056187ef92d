"""Traces: one streamed turn through the service gives an HTTP span continuing the caller's ``traceparent``,
a turn span under it, a GenAI ``chat`` span and the persistence writes under the turn; the api-call row
records the trace id. Without an SDK nothing is recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mofa_sdk.llm import current_trace_id, tracing_enabled
from mofa_sdk.persistence import connect_store, issue_api_key
from mofa_sdk.server import ServeConfig
from tests.server.support import ByContent, InProcess, auth, in_process, read_events
from tests.support.otel import Spans, recording_spans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def served(tmp_path: object) -> AsyncIterator[InProcess]:
    db = f"sqlite:///{tmp_path}/traced.db"
    store = await connect_store(db)
    try:
        async with in_process(store, ByContent(5, 0.0), db, ServeConfig(max_reply_chars=None)) as app:
            yield app
    finally:
        await store.close()


async def _turn(app: InProcess, key: str, content: str, headers: dict[str, str] | None = None) -> str:
    c = app.client
    r = await c.post("/v1/sessions", json={}, headers=auth(key))
    assert r.status_code == 201, r.text
    session = r.json()["id"]
    async with c.stream("POST", f"/v1/sessions/{session}/messages", json={"content": content},
                        headers={**auth(key), **(headers or {})}) as resp:
        assert resp.status_code == 200
        events, _ = await read_events(resp)
    assert events[-1].event == "done", events[-1]
    return str(resp.headers["mofa-run-id"])


async def _until(check: object, seconds: float = 10.0) -> None:
    assert callable(check)
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for spans")


async def test_a_streamed_turn_is_traced_with_genai_attributes(served: InProcess) -> None:
    row, key = await issue_api_key(served.store, uuid.uuid4(), uuid.uuid4(), "trace")
    with recording_spans() as spans:
        run_id = await _turn(served, key, "words=4", {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
        await _until(lambda: spans.named("invoke_agent") and spans.named("POST /v1/sessions/{session_id}/messages"))
        _check_shape(spans)
    # the api-call row names the trace
    reply = await served.store.get_message(row.tenant_id, uuid.UUID(run_id))
    assert reply is not None and reply.status == "complete"
    call = await served.store.get_api_call_for_message(row.tenant_id, reply.id)
    assert call is not None and call.trace_id == TRACE_ID, call


def _check_shape(spans: Spans) -> None:
    (http,) = spans.named("POST /v1/sessions/{session_id}/messages")
    assert http.context is not None and format(http.context.trace_id, "032x") == TRACE_ID
    assert http.parent is not None and format(http.parent.span_id, "016x") == PARENT_SPAN  # the caller's span
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 200
    (turn,) = spans.named("invoke_agent")
    assert turn.parent is not None and turn.parent.span_id == http.context.span_id
    assert turn.context is not None
    (chat,) = spans.named("chat ")
    assert chat.name == "chat scripted-model"
    assert chat.parent is not None and chat.parent.span_id == turn.context.span_id
    a: dict[str, Any] = dict(chat.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "scripted-model"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0, a
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",), a
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is opt-in
    writes = spans.named("mofa.persist ")
    names = {w.name for w in writes}
    assert {"mofa.persist save user_message", "mofa.persist save reply"} <= names, names
    for w in writes:
        assert w.parent is not None and w.parent.span_id == turn.context.span_id, w.name
        assert (w.attributes or {})["db.system.name"] == "sqlite"
    # one trace (the session was created by a request of its own, in a trace of its own)
    (create,) = spans.named("POST /v1/sessions")[:1]
    assert create.context is not None and format(create.context.trace_id, "032x") != TRACE_ID
    assert {format(s.context.trace_id, "032x") for s in spans.all() if s.context and s is not create} == {TRACE_ID}


async def test_content_is_recorded_only_when_asked(served: InProcess) -> None:
    from mofa_sdk.llm import capture_content

    _, key = await issue_api_key(served.store, uuid.uuid4(), uuid.uuid4(), "trace")
    capture_content(True)
    try:
        with recording_spans() as spans:
            await _turn(served, key, "words=3 tell me")
            await _until(lambda: spans.named("chat "))
            a = dict(spans.named("chat ")[0].attributes or {})
    finally:
        capture_content(False)
    assert "tell me" in str(a["gen_ai.input.messages"]) and "w0 w1 w2" in str(a["gen_ai.output.messages"]), a


async def test_without_an_sdk_nothing_is_traced(served: InProcess) -> None:
    row, key = await issue_api_key(served.store, uuid.uuid4(), uuid.uuid4(), "trace")
    assert not tracing_enabled() and current_trace_id() is None
    run_id = await _turn(served, key, "words=2", {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
    reply = await served.store.get_message(row.tenant_id, uuid.UUID(run_id))
    assert reply is not None
    call = await served.store.get_api_call_for_message(row.tenant_id, reply.id)
    assert call is not None and call.trace_id is None


async def test_the_fallback_middleware_continues_the_callers_trace() -> None:
    """With a FastAPI that makes no request spans of its own, ``TracingMiddleware`` makes them."""
    import httpx2

    from mofa_sdk.server.http import TracingMiddleware

    class Route:
        path = "/v1/things/{id}"

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        scope["route"] = Route()  # what the router records for the request
        assert callable(send)
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with recording_spans() as spans:
        transport = httpx2.ASGITransport(app=TracingMiddleware(app))  # type: ignore[arg-type]
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/v1/things/7", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
        assert r.status_code == 503
        (span,) = spans.all()
    assert span.name == "GET /v1/things/{id}"
    assert span.context is not None and format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_SPAN
    a = dict(span.attributes or {})
    assert a["http.route"] == "/v1/things/{id}" and a["http.response.status_code"] == 503
    assert a["error.type"] == "503" and not span.status.is_ok


def test_otel_starts_the_sdk_with_the_exporter_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from opentelemetry import trace

    from mofa_sdk.errors import ConfigError
    from mofa_sdk.server.http import start_otel_sdk
    from tests.support.otel import reset_tracing

    module = importlib.import_module("mofa_sdk.server.http._tracing")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mofa-test")
    for protocol, exporter_module in (("grpc", "grpc"), ("http/protobuf", "http")):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setattr(module, "_started", False)
        try:
            assert start_otel_sdk() and tracing_enabled()
            provider: Any = trace.get_tracer_provider()
            assert provider.resource.attributes["service.name"] == "mofa-test"
            (processor,) = provider._active_span_processor._span_processors
            exporter = processor.span_exporter
            assert f".proto.{exporter_module}." in type(exporter).__module__, type(exporter).__module__
            assert not start_otel_sdk()  # once per process: an SDK set already is kept
        finally:
            reset_tracing()
            provider.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    monkeypatch.setattr(module, "_started", False)
    with pytest.raises(ConfigError, match="http/protobuf or grpc"):
        start_otel_sdk()
    assert not tracing_enabled()
