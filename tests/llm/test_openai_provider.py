"""OpenAICompatibleProvider against the fault-injecting SSE server: every fault maps to its error type."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from mofa_sdk.errors import (
    AuthenticationError,
    ConfigError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderServerError,
    ProviderTimeoutError,
    RateLimitError,
    StreamInterruptedError,
    ValidationError,
)
from mofa_sdk.llm._openai import OpenAICompatibleProvider
from mofa_sdk.llm._provider import ChatParams, Finish, ProviderEvent, StreamStarted, TextDelta, UsageReport
from mofa_sdk.llm._tokens import estimate_tokens
from mofa_sdk.llm._types import ChatMessage
from tests.support.fault_server import FaultServer, Reply

KEY = "sk-test-SECRET-0123456789abcdef"
MESSAGES = [ChatMessage("system", "You are terse."), ChatMessage("user", "Say hi")]


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


class Sleeps:
    """Records the delays the provider asked for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(server: FaultServer, **kw: Any) -> OpenAICompatibleProvider:
    kw.setdefault("api_key", KEY)
    kw.setdefault("default_model", "fault-model")
    kw.setdefault("read_timeout", 5.0)
    return OpenAICompatibleProvider(base_url=server.base_url, **kw)


async def collect(
    provider: OpenAICompatibleProvider, params: ChatParams | None = None
) -> list[ProviderEvent]:
    return [e async for e in provider.stream(MESSAGES, params or ChatParams(model="fault-model"))]


async def fails(provider: OpenAICompatibleProvider, params: ChatParams | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await collect(provider, params)
    assert KEY not in str(info.value)
    return info.value


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- the happy paths ----------------------------------------------------------------------------------


async def test_stream_yields_started_deltas_usage_finish(server: FaultServer) -> None:
    provider = make(server)
    events = await collect(provider, ChatParams(model="m1", temperature=0.5, max_tokens=7))
    assert events[0] == StreamStarted("chatcmpl-fault")
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("tok0 "), TextDelta("tok1 "),
                                                                 TextDelta("tok2 ")]
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 3, 14)
    assert not usage.estimated
    assert events[-1] == Finish("stop", "chatcmpl-fault")
    assert isinstance(events[-2], UsageReport)
    body = server.requests[0].body
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Say hi"}]
    assert body["model"] == "m1" and body["stream"] is True
    assert body["temperature"] == 0.5 and body["max_tokens"] == 7
    assert body["stream_options"] == {"include_usage": True}
    assert "response_format" not in body
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[0].finished_writing
    await provider.aclose()


async def test_request_options_reach_the_body(server: FaultServer) -> None:
    provider = make(server)
    extra = {"top_k": 5, "seed": 1}
    await collect(provider, ChatParams(model="m", response_format="json_object", extra=extra))
    await collect(provider, ChatParams(model="m", response_format={"type": "json_schema", "json_schema": {}}))
    first, second = (r.body for r in server.requests)
    assert first["response_format"] == {"type": "json_object"}
    assert first["top_k"] == 5 and first["seed"] == 1
    assert second["response_format"] == {"type": "json_schema", "json_schema": {}}
    assert "temperature" not in first and "max_tokens" not in first


async def test_estimated_usage_is_marked_when_server_sends_none(server: FaultServer) -> None:
    server.default = Reply(usage=False, chunks=["hello ", "world"])
    events = await collect(make(server))
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert usage.estimated is True
    assert usage.completion_tokens == estimate_tokens("hello world")
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_rejected_stream_options_retried_once_without_and_remembered(server: FaultServer) -> None:
    server.default = Reply(reject_stream_options=True)
    provider = make(server)
    events = await collect(provider)
    assert text_of(events) == "tok0 tok1 tok2 "
    assert next(e for e in events if isinstance(e, UsageReport)).usage.estimated
    await collect(provider)
    sent = ["stream_options" in r.body for r in server.requests]
    assert sent == [True, False, False]


async def test_include_usage_false_never_sends_stream_options(server: FaultServer) -> None:
    await collect(make(server, include_usage=False))
    assert "stream_options" not in server.requests[0].body


async def test_non_streamed_request(server: FaultServer) -> None:
    events = await collect(make(server), ChatParams(model="m", stream=False))
    assert server.requests[0].body["stream"] is False
    assert events == [StreamStarted("chatcmpl-fault"), TextDelta("tok0 tok1 tok2 "), events[2],
                      Finish("stop", "chatcmpl-fault")]
    assert isinstance(events[2], UsageReport) and events[2].usage.completion_tokens == 3


async def test_no_key_sends_a_placeholder(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    await collect(make(server, api_key=None))
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


# -- status errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors(server: FaultServer, status: int) -> None:
    # the server echoes the key back, as some do: it must not reach the message
    server.push(Reply(status=status, error_body={"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    err = await fails(make(server))
    assert type(err) is AuthenticationError
    assert (err.status_code, err.partial_text, err.code) == (status, "", "authentication")
    assert "***" in str(err)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors(server: FaultServer, status: int) -> None:
    server.push(Reply(status=status))
    err = await fails(make(server))
    assert type(err) is ProviderServerError and err.status_code == status
    assert len(server.requests) == 1  # 5xx is not retried


async def test_other_4xx_is_a_plain_provider_error(server: FaultServer) -> None:
    server.push(Reply(status=404, error_body={"error": {"message": "model nope not found"}}))
    err = await fails(make(server))
    assert type(err) is ProviderError and err.status_code == 404 and "model nope not found" in str(err)


async def test_429_retried_honouring_retry_after_seconds(server: FaultServer) -> None:
    server.push(Reply(status=429, headers={"Retry-After": "2"}))
    sleeps = Sleeps()
    events = await collect(make(server, sleep=sleeps))
    assert text_of(events) == "tok0 tok1 tok2 "
    assert len(server.requests) == 2
    assert sleeps.delays == [2.0]


async def test_429_retry_after_http_date_and_cap(server: FaultServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    server.push(Reply(status=429, headers={"Retry-After": when}),
                Reply(status=429, headers={"Retry-After": "999"}))
    sleeps = Sleeps()
    await collect(make(server, sleep=sleeps, max_retry_delay=30.0))
    assert len(server.requests) == 3
    assert 10.0 < sleeps.delays[0] <= 20.0  # parsed from the date (the clock moved a little)
    assert sleeps.delays[1] == 30.0  # capped


async def test_429_gives_up_after_max_retries(server: FaultServer) -> None:
    server.push(*[Reply(status=429, headers={"Retry-After": "1"})] * 3)
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps, max_retries=2))
    assert type(err) is RateLimitError and err.status_code == 429 and err.call_status == "rate_limited"
    assert len(server.requests) == 3 and sleeps.delays == [1.0, 1.0]


@pytest.mark.parametrize(("headers", "cap", "low", "high"), [
    ({"retry-after-ms": "1500", "retry-after": "9"}, 30.0, 1.5, 1.5),  # milliseconds first
    ({"retry-after": "600"}, 30.0, 30.0, 30.0),  # past the SDK's 2 minutes it would not retry at all
    ({"retry-after": "600"}, 0.2, 0.2, 0.2),
    ({"retry-after": "-5"}, 30.0, 0.375, 0.5),  # nonsense: the SDK's first backoff step, jittered
    ({"retry-after": "soon"}, 30.0, 0.375, 0.5),
    ({}, 0.1, 0.1, 0.1),  # the backoff is capped too
], ids=["ms", "capped", "capped-low", "negative", "junk", "backoff-capped"])
async def test_429_wait_follows_retry_after_within_the_cap(
    server: FaultServer, headers: dict[str, str], cap: float, low: float, high: float
) -> None:
    server.push(Reply(status=429, headers=headers))
    sleeps = Sleeps()
    assert text_of(await collect(make(server, sleep=sleeps, max_retry_delay=cap))) == "tok0 tok1 tok2 "
    assert len(server.requests) == 2 and len(sleeps.delays) == 1
    assert low <= sleeps.delays[0] <= high


async def test_429_without_retry_after_backs_off_exponentially(server: FaultServer) -> None:
    server.push(*[Reply(status=429)] * 3)
    sleeps = Sleeps()
    await collect(make(server, sleep=sleeps))
    first, second, third = sleeps.delays
    assert 0.375 <= first <= 0.5 < 0.75 <= second <= 1.0 < 1.5 <= third <= 2.0


async def test_429_exhausted_with_the_default_retries(server: FaultServer) -> None:
    server.push(*[Reply(status=429, error_body={"error": {"message": f"slow down, {KEY}"}})] * 4)
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps))
    assert type(err) is RateLimitError and (err.status_code, err.code) == (429, "rate_limited")
    assert "rate limited (429) after 4 attempt(s): slow down, ***" in str(err)
    assert len(server.requests) == 4 and len(sleeps.delays) == 3  # the default: 3 retries
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2", "3"]


async def test_429_the_server_says_not_to_retry_is_not_retried(server: FaultServer) -> None:
    # what OpenAI sends with a 429 for a used-up quota: waiting does not help
    server.push(Reply(status=429, headers={"x-should-retry": "false"}))
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps))
    assert type(err) is RateLimitError and "after 1 attempt(s)" in str(err)
    assert len(server.requests) == 1 and sleeps.delays == []


@pytest.mark.parametrize("status", [408, 409, 500, 502])
async def test_statuses_the_sdk_would_retry_are_not(server: FaultServer, status: int) -> None:
    # the SDK resends these by default; a 5xx may have run (and billed) the generation
    server.push(Reply(status=status, headers={"x-should-retry": "true"} if status == 502 else {}))
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps))
    assert err.status_code == status and type(err) is (ProviderServerError if status >= 500 else ProviderError)
    assert len(server.requests) == 1 and sleeps.delays == []


async def test_a_first_byte_timeout_is_not_retried(server: FaultServer) -> None:
    server.push(Reply(first_byte_delay=30.0))
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps, read_timeout=0.3))
    assert type(err) is ProviderTimeoutError and "no response within 0.3s" in str(err)
    assert len(server.requests) == 1 and sleeps.delays == []


async def test_cannot_connect_is_not_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, sleep=sleeps)
    with pytest.raises(ProviderConnectionError, match=r"cannot connect \(ConnectError\)"):
        await collect(provider)
    assert sleeps.delays == []


@pytest.mark.parametrize("fault", ["error-event", "cut"])
async def test_a_failure_after_the_first_token_is_not_retried(server: FaultServer, fault: str) -> None:
    # the server gives up after one token: a 500 inside a 200 stream, or the connection dropped
    if fault == "cut":
        server.push(Reply(chunks=5, cut_after=1))
    else:
        server.push(Reply(chunks=5, malformed_at=1,
                          malformed_data='{"error": {"message": "upstream failed", "code": 500}}'))
    sleeps = Sleeps()
    err = await fails(make(server, sleep=sleeps))
    assert type(err) is (StreamInterruptedError if fault == "cut" else ProviderServerError)
    assert (err.partial_text, err.status_code) == ("tok0 ", 200)
    assert len(server.requests) == 1 and sleeps.delays == []


# -- transport faults ---------------------------------------------------------------------------------


async def test_cut_mid_stream(server: FaultServer) -> None:
    server.push(Reply(chunks=5, cut_after=2))
    err = await fails(make(server))
    assert type(err) is StreamInterruptedError
    assert (err.partial_text, err.status_code) == ("tok0 tok1 ", 200)


async def test_stream_ending_without_finish_reason_is_interrupted(server: FaultServer) -> None:
    server.push(Reply(finish_reason=None))
    err = await fails(make(server))
    assert type(err) is StreamInterruptedError and err.partial_text == "tok0 tok1 tok2 "


@pytest.mark.parametrize("data", ["{this is not json", '{"id": "x", "choices": "nope"}', "42",
                                  '{"id": "x", "choices": [{"index": 0, "delta": {"content": 7}}]}'])
async def test_malformed_chunk(server: FaultServer, data: str) -> None:
    server.push(Reply(chunks=5, malformed_at=2, malformed_data=data))
    err = await fails(make(server))
    assert type(err) is MalformedResponseError
    assert err.partial_text == "tok0 tok1 "


async def test_slow_first_byte_is_a_timeout(server: FaultServer) -> None:
    server.push(Reply(first_byte_delay=30.0))
    err = await fails(make(server, read_timeout=0.3))
    assert type(err) is ProviderTimeoutError and err.partial_text == "" and err.call_status == "timeout"


async def test_stall_mid_stream_is_a_timeout_with_partial_text(server: FaultServer) -> None:
    server.push(Reply(chunks=5, stall_after=2, stall_seconds=30.0))
    err = await fails(make(server, read_timeout=0.3))
    assert type(err) is ProviderTimeoutError
    assert (err.partial_text, err.status_code) == ("tok0 tok1 ", 200)
    await asyncio.wait_for(server.requests[0].disconnected.wait(), 10)  # the client hung up on the stall


async def test_cannot_connect() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
    with pytest.raises(ProviderConnectionError) as info:
        await collect(provider)
    assert info.value.partial_text == "" and KEY not in str(info.value)


async def test_connect_timeout() -> None:
    # a listener whose accept queue is full: Linux drops further SYNs, so connecting times out
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        try:
            provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=0.3)
            with pytest.raises(ProviderTimeoutError) as info:
                await collect(provider)
            assert "connect" in str(info.value) and info.value.partial_text == ""
        finally:
            for filler in fillers:
                filler.close()


# -- stopping early -----------------------------------------------------------------------------------


async def test_early_aclose_closes_the_connection(server: FaultServer) -> None:
    server.push(Reply(chunks=1000, chunk_delay=0.01))
    gen = make(server).stream(MESSAGES, ChatParams(model="m"))
    seen: list[str] = []
    async for event in gen:
        if isinstance(event, TextDelta):
            seen.append(event.text)
            if len(seen) == 3:
                break
    await gen.aclose()
    rec = server.requests[0]
    await asyncio.wait_for(rec.disconnected.wait(), 10)
    assert rec.client_disconnected and not rec.finished_writing
    assert rec.chunks_written < 1000
    assert seen == ["tok0 ", "tok1 ", "tok2 "]


async def test_task_cancellation_closes_the_connection(server: FaultServer) -> None:
    server.push(Reply(chunks=1000, chunk_delay=0.01))
    provider = make(server)
    three = asyncio.Event()

    async def consume() -> None:
        n = 0
        async for event in provider.stream(MESSAGES, ChatParams(model="m")):
            n += isinstance(event, TextDelta)
            if n == 3:
                three.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(three.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    rec = server.requests[0]
    await asyncio.wait_for(rec.disconnected.wait(), 10)
    assert not rec.finished_writing and rec.chunks_written < 1000


# -- keys, config, helpers ----------------------------------------------------------------------------


def test_repr_shows_url_and_model_not_key() -> None:
    provider = OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1", api_key=KEY, default_model="m-x")
    text = repr(provider)
    assert KEY not in text and "127.0.0.1:9" in text and "m-x" in text


@pytest.mark.parametrize("kw", [{"max_retries": -1}, {"read_timeout": 0}, {"connect_timeout": -1.0},
                                {"default_model": ""}])
def test_bad_config(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1", **kw)
    assert next(iter(kw)) in str(info.value)


def test_count_tokens_estimate() -> None:
    provider = OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1")
    assert provider.count_tokens("") == 0
    assert provider.count_tokens("abcd") == 1 and provider.count_tokens("abcde") == 2
    assert provider.count_tokens("é" * 4) == 2  # bytes, not characters


# -- the provider boundary (issue 14) -----------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_an_html_page_with_status_200_is_named_as_such(server: FaultServer, stream: bool) -> None:
    server.push(Reply(html=True))
    err = await fails(make(server), ChatParams(model="m", stream=stream))
    assert isinstance(err, MalformedResponseError) and err.status_code == 200
    want = "got text/html; charset=utf-8 with status 200" if stream else "got an HTML page with status 200"
    assert f"not an OpenAI-compatible response ({want}" in str(err)
    assert "finish reason" not in str(err)


async def test_request_text_utf8_cannot_encode_is_refused_before_sending(server: FaultServer) -> None:
    messages = [ChatMessage("system", "\udcff"), ChatMessage("user", "hi")]  # what --system $'\xff' gives
    with pytest.raises(ValidationError, match=r"the system prompt \(request message 0\).*'\\udcff'"):
        await collect_messages(make(server), messages)
    assert server.requests == []  # nothing was sent, so nothing can read as a bad response


async def test_usage_is_passed_on_as_sent_for_the_stream_layer_to_judge(server: FaultServer) -> None:
    server.push(Reply(usage_counts={"prompt_tokens": -5, "completion_tokens": 2**31, "total_tokens": 7}))
    events = await collect(make(server))
    usage = next(e for e in events if isinstance(e, UsageReport)).usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (-5, 2**31)


async def collect_messages(provider: OpenAICompatibleProvider, messages: list[ChatMessage]) -> list[ProviderEvent]:
    return [e async for e in provider.stream(messages, ChatParams(model="fault-model"))]


async def test_unencodable_text_elsewhere_in_the_body_is_named_too(server: FaultServer) -> None:
    with pytest.raises(ValidationError, match=r"the request holds a character UTF-8 cannot encode \('\\udcff'\)"):
        await collect(make(server), ChatParams(model="m", extra={"stop": ["\udcff"]}))
    assert server.requests == []
