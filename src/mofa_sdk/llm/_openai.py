"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama ``/v1`` …), via the ``openai``
SDK.

The SDK's own retry loop resends a request (429 only, see :class:`_Client`) before any of the response is
read, so a retry can never replay half a reply; this module maps every failure onto :mod:`mofa_sdk.errors`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .._redact import redact_logs, redact_text, redact_url, scrub_chain, upstream_names, url_secrets
from ..errors import (
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
from ._boundary import check_request
from ._openai_wire import wire_messages, wire_tool_options
from ._provider import ChatParams, Finish, ProviderEvent, StreamStarted, TextDelta, UsageReport
from ._tokens import estimate_tokens, estimate_usage
from ._toolcalls import ToolCallAccumulator, ToolCallFinished
from ._types import ChatMessage, Usage

if TYPE_CHECKING:
    from openai._models import FinalRequestOptions

__all__ = ["OpenAICompatibleProvider"]

#: sent when no key is given: local servers want none, but the SDK insists on a string
_PLACEHOLDER_KEY = "not-needed"

Sleep = Callable[[float], Awaitable[None]]
#: one streamed piece of a tool call: index, id, function name, argument fragment
_CallDelta = tuple[int, str | None, str | None, str | None]

# the HTTP client logs each request's URL (at INFO), credentials in base_url and all; the upstream's address
# is internal to the deployment, so its host is hidden too (the path still says which call it was)
redact_logs("httpx2", "httpx", "openai._base_client", "httpcore2.connection", "httpcore.connection", hide_hosts=True)


class _Client(openai.AsyncOpenAI):
    """The SDK's client, its retry loop, Retry-After parsing and backoff, held to this provider's policy: only
    a 429 is resent. A 5xx or a timeout may mean the server ran (and bills) the generation, and a server that
    is down is better said at once than after the backoff."""

    def __init__(self, *, sleep: Sleep, max_retry_delay: float, **options: Any) -> None:
        super().__init__(**options)
        self._retry_sleep = sleep
        self._max_retry_delay = max_retry_delay

    def _should_retry(self, response: httpx2.Response) -> bool:
        # the SDK also resends 408, 409 and 5xx; "x-should-retry: false" is how OpenAI marks a 429 that waiting
        # will not cure (the quota is used up)
        return response.status_code == 429 and response.headers.get("x-should-retry") != "false"

    async def _send_request(self, request: httpx2.Request, *, stream: bool, **kwargs: Any) -> httpx2.Response:
        # the SDK resends after any failure to send (timeouts too) but passes an OpenAIError on as it is
        try:
            return await super()._send_request(request, stream=stream, **kwargs)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:  # what the SDK counts as one
            raise openai.APIConnectionError(request=request) from exc

    async def _sleep_for_retry(
        self, *, retries_taken: int, max_retries: int, options: FinalRequestOptions, response: httpx2.Response | None
    ) -> None:
        # What the SDK cannot be told: a cap on the wait (it honours any Retry-After up to 2 minutes, and past
        # that does not retry at all), and what to wait with (tests pass a recorder as ``sleep``).
        headers = response.headers if response is not None else None
        wanted = self._parse_retry_after_header(headers)
        if wanted is None or not wanted > self._max_retry_delay:
            wanted = self._calculate_retry_timeout(max_retries - retries_taken, options, headers)
        await self._retry_sleep(min(wanted, self._max_retry_delay))


class OpenAICompatibleProvider:
    """Streams chat completions from an OpenAI-compatible server.

    ``api_key`` is optional (local servers); it is never shown in ``repr`` or error messages.
    ``include_usage``: None tries ``stream_options.include_usage`` and drops it for good if the server
    rejects it; True always sends it; False never does. Without server counts, usage is estimated and marked.
    A 429 is retried ``max_retries`` times, waiting as ``Retry-After`` says (at most ``max_retry_delay``) or
    backing off; ``sleep`` is the coroutine that waits (tests pass a recorder).
    """

    name = "openai-compatible"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        default_model: str = "gpt-4o-mini",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_retries: int = 3,
        include_usage: bool | None = None,
        http_client: httpx2.AsyncClient | None = None,
        max_retry_delay: float = 30.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        for label, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout),
                             ("max_retry_delay", max_retry_delay)):
            if not value > 0:
                raise ConfigError(f"{label} must be a positive number of seconds, got {value!r}")
        if not default_model:
            raise ConfigError("default_model must be a non-empty model name")
        self.default_model = default_model
        self._key = api_key or ""
        #: what no message may show: the key, credentials in base_url (http://u:pw@…, ?key=…), and where the
        #: upstream lives (a service's clients must not learn an internal address from an error)
        self._secrets = (self._key, *url_secrets(base_url), *upstream_names(base_url))
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._include_usage = include_usage
        #: None until a server has told us whether it accepts stream_options
        self._stream_options_ok: bool | None = None
        self._owns_http_client = http_client is None
        problem: str | None = None
        try:  # checked first: the SDK's own error would carry the URL, credentials and all
            httpx2.URL(base_url or "")
        except (httpx2.InvalidURL, ValueError, TypeError) as exc:
            problem = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        if problem is not None:  # raised outside the except: the original must not ride along as context
            # the URL itself is not shown: this can be an agent row's api_base answered to a service's client
            raise ConfigError(f"bad base_url ({problem})")
        self._client = _Client(
            sleep=sleep,
            max_retry_delay=max_retry_delay,
            api_key=api_key or _PLACEHOLDER_KEY,
            base_url=base_url,
            timeout=httpx2.Timeout(read_timeout, connect=connect_timeout),
            max_retries=max_retries,
            http_client=http_client,
        )
        #: where requests go, as reprs show it: credentials redacted (error messages never name it)
        self.base_url = redact_url(str(self._client.base_url))
        self._secrets += upstream_names(str(self._client.base_url))

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(base_url={self.base_url!r}, default_model={self.default_model!r})"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        if self._owns_http_client:
            await self._client.close()

    # -- streaming ------------------------------------------------------------------------------------

    async def stream(
        self, messages: Sequence[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ProviderEvent, None]:
        """Yields StreamStarted, TextDelta… and tool-call events (ToolCallStarted, ToolCallArgumentsDelta…, then
        a ToolCallFinished per call), UsageReport, Finish; raises only ProviderError subclasses, or
        ValidationError before sending anything for text UTF-8 cannot encode.

        An error's ``__cause__`` names the SDK exceptions behind it (class and redacted message) and its
        ``__context__`` is empty: the SDK's own exceptions carry the request, whose URL and headers may hold
        credentials, and their text may echo the key."""
        check_request(messages)  # else the HTTP client's encoding error would read as a bad response
        events = self._stream(messages, params)
        try:
            async for event in events:
                yield event
        except Exception as err:
            scrub_chain(err, self._secrets)
            raise  # a bare raise keeps the scrubbed chain as it is
        finally:
            await events.aclose()

    async def _stream(
        self, messages: Sequence[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ProviderEvent, None]:
        if not params.stream:
            async for event in self._complete(messages, params):
                yield event
            return
        sdk_stream = await self._open_stream(messages, params)
        parts: list[str] = []
        response_id: str | None = None
        finish: str | None = None
        usage: Usage | None = None
        started = False
        calls = ToolCallAccumulator()
        try:
            while True:
                try:
                    chunk = await sdk_stream.__anext__()
                except StopAsyncIteration:
                    break
                except (openai.OpenAIError, ValueError) as exc:  # JSONDecodeError is a ValueError
                    raise self._stream_error(exc, "".join(parts)) from None
                if not isinstance(chunk, ChatCompletionChunk):
                    raise MalformedResponseError(
                        f"{self._where()}: stream chunk is not a JSON object", partial_text="".join(parts)
                    )
                if not started:
                    started = True
                    response_id = chunk.id if isinstance(chunk.id, str) else None
                    yield StreamStarted(response_id)
                for text, reason, call_deltas in self._read_chunk(chunk, parts):
                    if text:
                        parts.append(text)
                        yield TextDelta(text)
                    for index, call_id, name, arguments in call_deltas:
                        for call_event in calls.feed(index, call_id, name, arguments):
                            yield call_event
                    if reason is not None:
                        finish = reason
                if chunk.usage is not None:
                    usage = self._server_usage(chunk.usage, "".join(parts))
        finally:
            # Releases the HTTP response at once, also on aclose() of this generator or cancellation.
            await sdk_stream.close()
        text = "".join(parts)
        if finish is None:
            raise StreamInterruptedError(
                f"{self._where()}: the stream ended before the server sent a finish reason",
                partial_text=text, status_code=200,
            )
        finished = self._finished_calls(calls, text)
        for event in finished:
            yield event
        arguments = "".join(event.call.arguments for event in finished)
        yield UsageReport(usage or self._estimate(messages, text + arguments))
        yield Finish(finish, response_id)

    def _finished_calls(self, calls: ToolCallAccumulator, text: str) -> list[ToolCallFinished]:
        nameless = calls.nameless()
        if nameless:  # nothing could run it, and a history holding it would be refused
            raise MalformedResponseError(
                f"{self._where()}: tool call(s) at index {nameless} came without a function name",
                partial_text=text, status_code=200,
            )
        return calls.finished()

    async def _open_stream(
        self, messages: Sequence[ChatMessage], params: ChatParams
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        want_usage = self._include_usage is True or (
            self._include_usage is None and self._stream_options_ok is not False
        )
        try:
            result = await self._create(messages, params, stream=True, include_usage=want_usage)
        except openai.BadRequestError as exc:
            if not (want_usage and self._include_usage is None and "stream_options" in _error_text(exc)):
                raise self._request_error(exc) from None
            self._stream_options_ok = False
            try:
                result = await self._create(messages, params, stream=True, include_usage=False)
            except openai.BadRequestError as again:
                raise self._request_error(again) from None
        else:
            if want_usage:
                self._stream_options_ok = True
        if not isinstance(result, openai.AsyncStream):
            raise MalformedResponseError(f"{self._where()}: expected an event stream", status_code=200)
        content_type = result.response.headers.get("content-type", "")
        if content_type and content_type.partition(";")[0].strip().lower() != "text/event-stream":
            # an HTML page (a proxy, a login portal, a wrong base URL) holds no events: say so, rather than
            # read it as a stream that ended early
            await result.close()
            raise MalformedResponseError(
                f"{self._where()}: not an OpenAI-compatible response (got {_shown(content_type)} with status "
                f"{result.response.status_code}, not an event stream); check the base URL",
                status_code=result.response.status_code,
            )
        return cast("openai.AsyncStream[ChatCompletionChunk]", result)

    async def _complete(
        self, messages: Sequence[ChatMessage], params: ChatParams
    ) -> AsyncGenerator[ProviderEvent, None]:
        try:
            result = await self._create(messages, params, stream=False, include_usage=False)
        except openai.BadRequestError as exc:
            raise self._request_error(exc) from None
        if isinstance(result, str):  # what the SDK returns for a body that is not JSON
            kind = "an HTML page" if result.lstrip()[:1] == "<" else "text that is not JSON"
            raise MalformedResponseError(
                f"{self._where()}: not an OpenAI-compatible response (got {kind} with status 200); "
                "check the base URL", status_code=200,
            )
        choices = result.choices if isinstance(result, ChatCompletion) else None
        if not isinstance(result, ChatCompletion) or not isinstance(choices, list) or not choices:
            raise MalformedResponseError(f"{self._where()}: the response has no choices", status_code=200)
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if not isinstance(content, str | None):
            raise MalformedResponseError(f"{self._where()}: the message content is not text", status_code=200)
        text = content or ""
        calls = ToolCallAccumulator()
        call_events = []
        for index, call_id, name, arguments in self._read_calls(getattr(message, "tool_calls", None), [text], True):
            call_events += calls.feed(index, call_id, name, arguments)
        finished = self._finished_calls(calls, text)
        response_id = result.id if isinstance(result.id, str) else None
        yield StreamStarted(response_id)
        if text:
            yield TextDelta(text)
        for call_event in [*call_events, *finished]:
            yield call_event
        arguments_text = "".join(event.call.arguments for event in finished)
        usage = self._server_usage(result.usage, text) if result.usage is not None else None
        yield UsageReport(usage or self._estimate(messages, text + arguments_text))
        reason = getattr(choice, "finish_reason", None)
        yield Finish(reason if isinstance(reason, str) else "stop", response_id)

    async def _create(
        self, messages: Sequence[ChatMessage], params: ChatParams, *, stream: bool, include_usage: bool
    ) -> object:
        """One request; the SDK resends it on 429 (nothing has streamed yet, so a retry cannot duplicate text)."""
        body = wire_messages(messages)
        tool_options = wire_tool_options(params)
        response_format: Any = openai.omit
        if isinstance(params.response_format, str):
            response_format = {"type": params.response_format}
        elif params.response_format is not None:
            response_format = params.response_format
        try:
            return await self._client.chat.completions.create(
                model=params.model or self.default_model,
                messages=cast(Any, body),
                stream=stream,
                stream_options={"include_usage": True} if include_usage else openai.omit,
                temperature=params.temperature if params.temperature is not None else openai.omit,
                max_tokens=params.max_tokens if params.max_tokens is not None else openai.omit,
                response_format=response_format,
                tools=tool_options.get("tools", openai.omit),
                tool_choice=tool_options.get("tool_choice", openai.omit),
                parallel_tool_calls=tool_options.get("parallel_tool_calls", openai.omit),
                extra_body=dict(params.extra) or None,
            )
        except openai.BadRequestError:
            raise  # the caller decides whether it is the stream_options case
        except UnicodeEncodeError as exc:  # encoding our request body, not reading a response
            bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else "?"
            raise ValidationError(
                f"{self._where()}: the request holds a character UTF-8 cannot encode ({bad!r}); "
                "it was not sent"
            ) from None
        except (openai.OpenAIError, ValueError) as exc:
            raise self._request_error(exc) from None

    # -- chunks and usage -----------------------------------------------------------------------------

    def _read_chunk(
        self, chunk: ChatCompletionChunk, parts: list[str]
    ) -> list[tuple[str, str | None, list[_CallDelta]]]:
        # ``parts`` is joined only on error: joining it for every chunk made a long reply quadratic
        choices = chunk.choices
        if not isinstance(choices, list):
            raise MalformedResponseError(f"{self._where()}: chunk without a choices list",
                                         partial_text="".join(parts), status_code=200)
        out: list[tuple[str, str | None, list[_CallDelta]]] = []
        for choice in choices:
            if getattr(choice, "index", 0) not in (0, None):
                continue  # n > 1 is not requested; ignore extra candidates
            delta = getattr(choice, "delta", None)
            content = getattr(delta, "content", None) if delta is not None else None
            reason = getattr(choice, "finish_reason", None)
            if not isinstance(content, str | None) or not isinstance(reason, str | None):
                raise MalformedResponseError(f"{self._where()}: chunk content is not text",
                                             partial_text="".join(parts), status_code=200)
            call_deltas = getattr(delta, "tool_calls", None) if delta is not None else None
            out.append((content or "", reason, self._read_calls(call_deltas, parts, False)))
        return out

    def _read_calls(self, raw: object, parts: list[str], whole: bool) -> list[_CallDelta]:
        """The tool-call pieces of a chunk's delta (``whole``: a non-streamed message's calls, indexed by
        position), checked: a piece that is not what the protocol says is a malformed response."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise MalformedResponseError(f"{self._where()}: tool_calls is not a list",
                                         partial_text="".join(parts), status_code=200)
        out: list[_CallDelta] = []
        for position, item in enumerate(raw):
            index = position if whole else getattr(item, "index", None)
            function = getattr(item, "function", None)
            call_id = getattr(item, "id", None)
            name = getattr(function, "name", None)
            arguments = getattr(function, "arguments", None)
            if type(index) is not int or index < 0 or not all(
                isinstance(v, str | None) for v in (call_id, name, arguments)
            ):
                raise MalformedResponseError(f"{self._where()}: a tool call that is not what the protocol says "
                                             f"(index {index!r})", partial_text="".join(parts), status_code=200)
            out.append((index, call_id, name, arguments))
        return out

    def _server_usage(self, raw: object, partial: str) -> Usage | None:
        prompt = getattr(raw, "prompt_tokens", None)
        completion = getattr(raw, "completion_tokens", None)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None  # a server that sends an empty usage object is treated as sending none
        total = getattr(raw, "total_tokens", None)

        def details(name: str) -> dict[str, Any] | None:
            value = getattr(raw, name, None)
            dump = getattr(value, "model_dump", None)
            return cast("dict[str, Any]", dump()) if callable(dump) else None

        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total if isinstance(total, int) else prompt + completion,
            prompt_tokens_details=details("prompt_tokens_details"),
            completion_tokens_details=details("completion_tokens_details"),
        )

    def _estimate(self, messages: Sequence[ChatMessage], text: str) -> Usage:
        return estimate_usage(messages, text)

    # -- errors ---------------------------------------------------------------------------------------

    def _where(self) -> str:
        # not the base URL: an error reaches a service's clients, and the upstream's address is internal
        return f"{self.name} provider"

    def _scrub(self, text: str) -> str:
        return redact_text(text, self._secrets)

    def _request_error(self, exc: BaseException) -> ProviderError:
        """Maps a failure before any chunk arrived."""
        where = self._where()
        if isinstance(exc, openai.APITimeoutError):
            if isinstance(exc.__cause__, httpx2.ConnectTimeout):
                return ProviderTimeoutError(f"{where}: connect timed out after {self._connect_timeout:g}s")
            return ProviderTimeoutError(f"{where}: no response within {self._read_timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderConnectionError(f"{where}: cannot connect ({type(exc.__cause__).__name__})")
        if isinstance(exc, openai.APIResponseValidationError):
            return MalformedResponseError(f"{where}: response does not match the protocol",
                                          status_code=exc.status_code)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = self._scrub(_error_text(exc))
            if status in (401, 403):
                return AuthenticationError(f"{where}: authentication failed ({status}): {detail}",
                                           status_code=status)
            if status == 429:
                return RateLimitError(f"{where}: rate limited (429) after {_attempts(exc)} attempt(s): {detail}",
                                      status_code=status)
            if status >= 500:
                return ProviderServerError(f"{where}: server error ({status}): {detail}", status_code=status)
            return ProviderError(f"{where}: request rejected ({status}): {detail}", status_code=status)
        if isinstance(exc, ValueError):
            return MalformedResponseError(f"{where}: response is not valid JSON", status_code=200)
        return ProviderError(f"{where}: {self._scrub(str(exc))}")

    def _stream_error(self, exc: BaseException, partial: str) -> ProviderError:
        """Maps a failure after the response started (status 200): ``partial`` is what streamed."""
        where = self._where()
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeoutError(f"{where}: no data for {self._read_timeout:g}s mid-stream",
                                        partial_text=partial, status_code=200)
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__
            return StreamInterruptedError(f"{where}: connection cut mid-stream ({cause})",
                                          partial_text=partial, status_code=200)
        if isinstance(exc, ValueError):
            return MalformedResponseError(f"{where}: stream chunk is not valid JSON",
                                          partial_text=partial, status_code=200)
        if isinstance(exc, openai.APIError):
            # an {"error": …} event inside a 200 stream: the server gave up part-way
            return ProviderServerError(f"{where}: error event mid-stream: {self._scrub(exc.message)}",
                                       partial_text=partial, status_code=200)
        return ProviderError(f"{where}: {self._scrub(str(exc))}", partial_text=partial, status_code=200)


def _shown(header: str) -> str:
    """A response header as it may be shown: short and printable."""
    text = "".join(c if c.isprintable() else "?" for c in header[:80])
    return text + ("…" if len(header) > 80 else "")


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str):
            return message
    return exc.message


def _attempts(exc: openai.APIStatusError) -> int:
    """How many times the SDK sent the request: it numbers its retries in a request header."""
    taken = exc.response.request.headers.get("x-stainless-retry-count", "0")
    return int(taken) + 1 if taken.isdigit() else 1
