"""The real OpenAI-compatible server for tests: ``python -m llama_cpp.server`` with SmolLM2, behind a small
recording reverse proxy on loopback so tests can assert on exactly what the server received.

The proxy runs its own event loop in a thread (it works for sync and async tests alike) and pipes response
bytes through as they arrive, so SSE streams stay streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from .ports import free_port

__all__ = ["LlamaServer", "RecordingProxy", "llama_server", "start_llama_server"]

_HEAD_END = b"\r\n\r\n"


def _set_header(head: bytes, name: str, value: str) -> bytes:
    """Replaces (or adds) one header in a raw HTTP/1.1 head that ends without the blank line."""
    lines = head.split(b"\r\n")
    kept = [ln for ln in lines[1:] if not ln.lower().startswith(name.lower().encode() + b":")]
    return b"\r\n".join([lines[0], *kept, f"{name}: {value}".encode()])


class RecordingProxy:
    """Forwards every request to ``upstream`` (one request per connection) and records the JSON bodies of
    chat completion requests, and the raw bodies of their responses."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[dict[str, Any]] = []
        #: grows as bytes pass, recorded before they are forwarded: whatever a client saw is here
        self.responses: list[bytearray] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llama-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        #: the loop keeps only weak references to tasks: a handler left waiting on a socket would be
        #: garbage-collected mid-await ("Task was destroyed but it is pending!") without these
        self._handlers: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()
        fut: Future[asyncio.Server] = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        this = asyncio.current_task()
        if this is not None:
            self._handlers.add(this)
            this.add_done_callback(self._handlers.discard)
        try:
            head = (await reader.readuntil(_HEAD_END))[: -len(_HEAD_END)]
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, path, _ = request_line.split(" ", 2)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            is_chat = method == "POST" and path.rstrip("/").endswith("/chat/completions")
            if is_chat:
                self.requests.append(json.loads(body))
            head = _set_header(_set_header(head, "Connection", "close"), "Host",
                               f"127.0.0.1:{self.upstream_port}")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head + _HEAD_END + body)
            await up_writer.drain()
            # the response head gets Connection: close too, so the client never reuses this socket
            resp_head = (await up_reader.readuntil(_HEAD_END))[: -len(_HEAD_END)]
            writer.write(_set_header(resp_head, "Connection", "close") + _HEAD_END)
            await writer.drain()
            recorded = bytearray()
            if is_chat:
                self.responses.append(recorded)
            while chunk := await up_reader.read(65536):
                if is_chat and len(recorded) < 1_000_000:
                    recorded += chunk
                writer.write(chunk)  # passed on at once: no buffering of SSE
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that hangs up mid-stream closes the upstream socket below
        finally:
            for w in (up_writer, writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):  # TimeoutError too: never wait on a dead peer
                        await asyncio.wait_for(w.wait_closed(), 5)


class LlamaServer:
    """A running llama.cpp server and the recording proxy in front of it."""

    def __init__(self, process: subprocess.Popen[bytes], proxy: RecordingProxy, log_path: Path,
                 model_path: Path, model_id: str) -> None:
        self.process = process
        self.proxy = proxy
        self.log_path = log_path
        self.model_path = model_path
        #: the model id the server lists under /v1/models
        self.model_id = model_id
        self.base_url = f"http://127.0.0.1:{proxy.port}/v1"
        self.upstream_url = f"http://127.0.0.1:{proxy.upstream_port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed JSON bodies of the chat completion requests the server received, in order."""
        return self.proxy.requests

    @property
    def responses(self) -> list[bytearray]:
        """The raw response bodies of those requests (SSE text when streamed)."""
        return self.proxy.responses

    def clear(self) -> None:
        self.proxy.requests.clear()
        self.proxy.responses.clear()

    def stop(self) -> None:
        self.proxy.stop()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_llama_server(
    model_path: Path | None = None, *, startup_timeout: float = 90.0, chat_format: str | None = None
) -> LlamaServer:
    """Starts the server on a free port, waits until ``/v1/models`` answers, and puts the proxy in front.
    ``chat_format``: llama.cpp's chat format (e.g. ``chatml-function-calling`` for tools), else the model's."""
    if model_path is None:
        from mofa_sdk.llm._local import find_default_model

        model_path = find_default_model()
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--verbose", "False"]
    if chat_format is not None:
        cmd += ["--chat_format", chat_format]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + startup_timeout
    model_id = ""
    while True:
        if process.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as resp:
                model_id = json.load(resp)["data"][0]["id"]
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise RuntimeError(f"llama_cpp.server did not answer within {startup_timeout:g}s:\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.25)
    proxy = RecordingProxy(port)
    try:
        proxy.start()
    except BaseException:
        process.kill()
        raise
    return LlamaServer(process, proxy, log, model_path, model_id)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """The real OpenAI-compatible server (``python -m llama_cpp.server``, SmolLM2) behind a recording proxy:
    ``.base_url`` (the proxy's ``/v1``), ``.requests`` (chat request bodies, in order), ``.clear()``."""
    server = start_llama_server()
    try:
        yield server
    finally:
        server.stop()
