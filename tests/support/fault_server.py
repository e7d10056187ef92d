"""A scripted, fault-injecting server speaking just enough of ``POST /v1/chat/completions`` (SSE streaming).

Each request takes the next :class:`Reply` from the script (or the default one). Every request is recorded
(:class:`Recorded`) with its parsed body, how many chunks were written, and whether the client hung up before
the server finished writing. One request per connection (``Connection: close``), chunked transfer encoding, so
a socket closed mid-body is a visible protocol error to the client, as with a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

__all__ = ["FaultServer", "Recorded", "Reply", "ScriptedCall", "fault"]


def _tool_sequence_problem(messages: list[dict[str, Any]]) -> str | None:
    """What OpenAI's Chat Completions refuses in a request's message list, in its words; None when valid.
    Written from the wire format, independently of the library's own check."""
    open_ids: list[str] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_ids:
                return (f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                        f"with 'tool_calls' (messages.[{i}], tool_call_id {call_id!r})")
            open_ids.remove(call_id)
            continue
        if open_ids:
            return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                    f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                    f"{', '.join(open_ids)} (messages.[{i}])")
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if not message.get("content") and not calls:
                return f"Invalid value for 'content': expected a string, got null (messages.[{i}])"
            open_ids = [c.get("id") for c in calls]
    if open_ids:
        return ("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(open_ids)}")
    return None


@dataclass
class ScriptedCall:
    """A tool call the server streams: a first chunk with the id and name (empty arguments), then the
    arguments in ``pieces`` fragments of near-equal size."""

    id: str
    name: str
    arguments: str
    pieces: int = 4

    def fragments(self) -> list[str]:
        n = max(1, min(self.pieces, len(self.arguments)))
        size = -(-len(self.arguments) // n) if self.arguments else 0
        return [self.arguments[i : i + size] for i in range(0, len(self.arguments), size)] if size else []


@dataclass
class Reply:
    """One scripted response. The defaults give a normal stream of 3 text chunks, a finish and usage."""

    status: int = 200
    #: text pieces, or N for "tok0 ", "tok1 ", …
    chunks: int | list[str] = 3
    #: send a usage chunk when the request asks for it (``stream_options.include_usage``)
    usage: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    #: JSON body for a non-200 status
    error_body: dict[str, Any] | None = None
    #: close the socket after this many text chunks (no terminating chunk)
    cut_after: int | None = None
    #: replace the text chunk at this index with ``malformed_data``
    malformed_at: int | None = None
    malformed_data: str = "{this is not json"
    #: seconds to wait before the status line
    first_byte_delay: float = 0.0
    #: after this many text chunks, wait ``stall_seconds`` before going on
    stall_after: int | None = None
    stall_seconds: float = 30.0
    #: seconds between text chunks
    chunk_delay: float = 0.0
    finish_reason: str | None = "stop"
    #: answer 400 ("stream_options" unsupported) when the body has stream_options
    reject_stream_options: bool = False
    response_id: str = "chatcmpl-fault"
    #: "split": every text chunk is followed by an emoji whose surrogate pair is split across two chunks
    #: (``"\ud83d"`` then ``"\ude00"``, what a JSON escape pair cut in two decodes to); "lone": by a lone low
    #: surrogate, and the stream's last text chunk is a lone high surrogate
    surrogates: Literal["split", "lone"] | None = None
    #: the usage numbers to report instead of the true ones (e.g. negative, or >= 2**31)
    usage_counts: dict[str, int] | None = None
    #: after this many text chunks, send only ``: ping`` SSE comments, every ``keepalive_interval`` s, forever
    keepalive_after: int | None = None
    keepalive_interval: float = 1.0
    #: after the text chunks, instead of finishing: endless empty deltas, or endless "more " text chunks,
    #: one every ``chunk_delay`` s (as fast as the loop goes when 0), until the client hangs up
    endless: Literal["empty", "content"] | None = None
    #: answer HTTP 200 with an HTML page (a proxy's or a login portal's), whatever was asked
    html: bool = False
    #: tool calls streamed after the text chunks (one call after the other, by index), or in the message
    #: of a non-streamed answer; set ``finish_reason="tool_calls"`` with them as a server does
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    #: close the socket after this many tool-call chunks (mid-arguments), no finish
    tool_cut_after: int | None = None

    def _base(self) -> list[str]:
        return [f"tok{i} " for i in range(self.chunks)] if isinstance(self.chunks, int) else list(self.chunks)

    def pieces(self) -> list[str]:
        base = self._base()
        if self.surrogates == "split":
            return [p for piece in base for p in (piece, "\ud83d", "\ude00")]
        if self.surrogates == "lone":
            return [*(p for piece in base for p in (piece, "\ude00")), "\ud83d"]
        return base

    def expected_text(self) -> str:
        """The reply as the client must show it, surrogates repaired."""
        base = self._base()
        if self.surrogates == "split":
            return "".join(piece + "\U0001f600" for piece in base)
        if self.surrogates == "lone":
            return "".join(piece + "\ufffd" for piece in base) + "\ufffd"
        return "".join(base)

    def usage_for(self, completion: int) -> dict[str, int]:
        if self.usage_counts is not None:
            return dict(self.usage_counts)
        return {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion}


@dataclass
class Recorded:
    """What the server saw of one request and how its response went."""

    body: dict[str, Any]
    headers: dict[str, str]
    path: str
    received_at: float
    chunks_written: int = 0
    finished_writing: bool = False
    client_disconnected: bool = False
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


class FaultServer:
    """``async with FaultServer() as srv: srv.push(Reply(status=429, ...)); ... srv.base_url``."""

    def __init__(self, default: Reply | None = None, *, strict_tools: bool = False) -> None:
        self.default = default or Reply()
        #: answer 400 (as OpenAI does) to a request whose messages leave a tool call unanswered, hold a tool
        #: message answering no call of the assistant message before it, or an empty assistant message
        self.strict_tools = strict_tools
        self.script: deque[Reply] = deque()
        #: when set, the unscripted answer to a request that declares tools (for concurrent clients that cannot
        #: be scripted in order, as the Open Responses suite)
        self.with_tools: Reply | None = None
        self.requests: list[Recorded] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def start(self) -> FaultServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- one connection -------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            # dropped only now: a task the loop no longer sees is collected mid-await, an unraisable warning
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else {}
        rec = Recorded(body=body, headers=headers, path=path, received_at=time.monotonic())
        self.requests.append(rec)
        reply = self.script.popleft() if self.script else (
            self.with_tools if self.with_tools is not None and body.get("tools") else self.default)

        # The client sends nothing after its request, so EOF on the read side means it hung up.
        async def watch() -> None:
            with contextlib.suppress(ConnectionError):
                await reader.read(1)
            rec.client_disconnected = True
            rec.disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            await self._respond(writer, rec, reply)
        except ConnectionError:  # a write to a client that hung up, noticed before the watcher did
            rec.client_disconnected = True
            rec.disconnected.set()
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _pause(self, rec: Recorded, seconds: float) -> None:
        """Sleep, but wake up when the client hangs up."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rec.disconnected.wait(), seconds)

    async def _respond(self, writer: asyncio.StreamWriter, rec: Recorded, reply: Reply) -> None:
        await self._pause(rec, reply.first_byte_delay)
        if rec.client_disconnected:
            return
        body = rec.body
        problem = _tool_sequence_problem(body.get("messages") or []) if self.strict_tools else None
        if problem is not None:
            error = {"error": {"message": problem, "type": "invalid_request_error", "param": "messages"}}
            await self._send_json(writer, 400, error, {})
            return
        if reply.reject_stream_options and "stream_options" in body:
            error = {"error": {"message": "Unrecognized request argument supplied: stream_options",
                               "type": "invalid_request_error", "param": "stream_options"}}
            await self._send_json(writer, 400, error, {})
            return
        if reply.html:
            await self._send_html(writer)
            return
        if reply.status != 200:
            error = reply.error_body or {"error": {"message": f"scripted status {reply.status}",
                                                   "type": "scripted"}}
            await self._send_json(writer, reply.status, error, reply.headers)
            return
        model = str(body.get("model", "fault-model"))
        pieces = reply.pieces()
        if not body.get("stream"):
            text = "".join(pieces)
            usage = reply.usage_for(len(pieces))
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if reply.tool_calls:
                message["tool_calls"] = [{"id": c.id, "type": "function",
                                          "function": {"name": c.name, "arguments": c.arguments}}
                                         for c in reply.tool_calls]
            else:
                message["content"] = text
            completion = {
                "id": reply.response_id, "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                "usage": usage if reply.usage else None,
            }
            await self._send_json(writer, 200, completion, reply.headers)
            return
        await self._stream(writer, rec, reply, model, pieces)

    async def _stream(
        self, writer: asyncio.StreamWriter, rec: Recorded, reply: Reply, model: str, pieces: list[str]
    ) -> None:
        head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache",
                "Transfer-Encoding: chunked", "Connection: close"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
            obj = {"id": reply.response_id, "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return json.dumps(obj)

        for i, piece in enumerate(pieces):
            if rec.client_disconnected:
                return
            if reply.cut_after is not None and i == reply.cut_after:
                return  # the connection closes with the chunked body unterminated
            if reply.keepalive_after is not None and i == reply.keepalive_after:
                await self._keepalive(writer, rec, reply)
                return
            if reply.stall_after is not None and i == reply.stall_after:
                await self._pause(rec, reply.stall_seconds)
                if rec.client_disconnected:
                    return
            if reply.malformed_at == i:
                data = reply.malformed_data
            else:
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                data = chunk(delta, None)
            await self._event(writer, data)
            rec.chunks_written += 1
            await self._pause(rec, reply.chunk_delay)
        if rec.client_disconnected:
            return
        if reply.cut_after is not None and reply.cut_after >= len(pieces):
            return
        sent_calls = 0
        for index, call in enumerate(reply.tool_calls):
            first = {"index": index, "id": call.id, "type": "function",
                     "function": {"name": call.name, "arguments": ""}}
            later = [{"index": index, "function": {"arguments": fragment}} for fragment in call.fragments()]
            for piece_delta in [first, *later]:
                if reply.tool_cut_after is not None and sent_calls == reply.tool_cut_after:
                    return  # the connection closes mid-arguments
                if rec.client_disconnected:
                    return
                call_delta: dict[str, Any] = {"tool_calls": [piece_delta]}
                if not pieces and sent_calls == 0:
                    call_delta["role"] = "assistant"
                await self._event(writer, chunk(call_delta, None))
                sent_calls += 1
                rec.chunks_written += 1
                await self._pause(rec, reply.chunk_delay)
        if reply.keepalive_after is not None:
            await self._keepalive(writer, rec, reply)
            return
        if reply.endless is not None:
            delta = {"content": "more "} if reply.endless == "content" else {"content": ""}
            while not rec.client_disconnected:
                await self._event(writer, chunk(delta, None))
                rec.chunks_written += 1
                if reply.chunk_delay:
                    await self._pause(rec, reply.chunk_delay)
                else:
                    await asyncio.sleep(0)  # let the client (on this loop) read
            return
        if reply.finish_reason is not None:
            await self._event(writer, chunk({}, reply.finish_reason))
        wants_usage = bool((rec.body.get("stream_options") or {}).get("include_usage"))
        if reply.usage and wants_usage:
            usage = reply.usage_for(len(pieces))
            obj = {"id": reply.response_id, "object": "chat.completion.chunk", "created": 1, "model": model,
                   "choices": [], "usage": usage}
            await self._event(writer, json.dumps(obj))
        await self._event(writer, "[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        rec.finished_writing = True

    async def _keepalive(self, writer: asyncio.StreamWriter, rec: Recorded, reply: Reply) -> None:
        """SSE comments only: the connection is alive, the reply never moves."""
        while not rec.client_disconnected:
            payload = b": ping\n\n"
            writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            await writer.drain()
            await self._pause(rec, reply.keepalive_interval)

    @staticmethod
    async def _send_html(writer: asyncio.StreamWriter) -> None:
        payload = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"
        head = ["HTTP/1.1 200 OK", "Content-Type: text/html; charset=utf-8", f"Content-Length: {len(payload)}",
                "Connection: close"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()

    @staticmethod
    async def _event(writer: asyncio.StreamWriter, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()

    @staticmethod
    async def _send_json(
        writer: asyncio.StreamWriter, status: int, obj: dict[str, Any], headers: dict[str, str]
    ) -> None:
        payload = json.dumps(obj).encode()
        reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "OK")
        head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                f"Content-Length: {len(payload)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()


@pytest.fixture
async def fault() -> AsyncIterator[FaultServer]:
    """The loopback fault server, started for one test."""
    async with FaultServer() as srv:
        yield srv
