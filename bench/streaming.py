"""3. Streaming pass-through: a 2,000-chunk reply through ``chat_stream`` against the bare ``openai`` SDK.

The server is a separate process (so its work never shares the client's event loop or GIL) that answers
every ``POST /v1/chat/completions`` with a pre-rendered SSE body in one write, keeping the connection
alive: what is measured is the client's cost of reading and passing on the stream. Both clients read the
same bytes; the mofa agent also persists the turn (user message before the call, reply + api-call row
after) and checkpoints the partial reply while streaming.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _common import AGENT, TENANT, USER, Mode, pg_schema, stats

CHUNKS = 2000


def render(chunks: int, usage: bool) -> bytes:
    """The whole SSE body of one streamed completion (what a fast server would send)."""
    events: list[str] = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": f"tok{i} "} if i == 0 else {"content": f"tok{i} "}
        events.append(json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }))  # fmt: skip
    events.append(json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }))  # fmt: skip
    if usage:
        events.append(json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
            "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": chunks, "total_tokens": 11 + chunks},
        }))  # fmt: skip
    events.append("[DONE]")
    return "".join(f"data: {e}\n\n" for e in events).encode()


def serve(chunks: int) -> None:
    """Run the server (in its own process); prints the port, then serves until stdin closes."""
    bodies = {u: render(chunks, u) for u in (False, True)}
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                usage = b'"include_usage":true' in body.replace(b" ", b"")
                payload = bodies[usage]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                    b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
                )

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # the parent closes our stdin (or dies): stop


@contextmanager
def server(chunks: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(chunks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


# -- the two clients -----------------------------------------------------------------------------------
async def bare_sdk(client: Any) -> tuple[float, float, int]:
    """Wall time, time to first token, and characters, reading the stream with the SDK alone."""
    t0 = time.perf_counter()
    first = 0.0
    n = 0
    stream = await client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": "Count."}], stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not first:
                first = time.perf_counter()
            n += len(chunk.choices[0].delta.content)
    return time.perf_counter() - t0, first - t0, n


async def through_mofa(agent: Any) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = 0.0
    n = 0
    async for text in agent.chat_stream("Count."):
        if not first:
            first = time.perf_counter()
        n += len(text)
    return time.perf_counter() - t0, first - t0, n


async def run(admin_url: str, mode: Mode) -> dict[str, Any]:
    import gc

    import openai

    from mofa_sdk.llm import LLMAgentBuilder, OpenAICompatibleProvider
    from mofa_sdk.persistence import PersistencePlugin, PostgresStore

    n, warmup = mode.n(60, 10), mode.n(5, 2)
    result: dict[str, Any] = {"chunks": CHUNKS, "runs": n, "warmup": warmup}
    with server(CHUNKS) as base_url:
        async with pg_schema(admin_url, "stream") as (url, _):
            store = await PostgresStore.connect(url)
            client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
            agents: dict[str, Any] = {}
            # the default checkpoint interval (1 s) never fires on a stream this fast; 5 ms makes the
            # agent checkpoint several times per reply, the worst case for the token path
            for name, interval in (("mofa", 1.0), ("mofa_checkpoint_5ms", 0.005)):
                plugin = PersistencePlugin.from_store(
                    "bench", store, USER, TENANT, AGENT, checkpoint_interval=interval
                )
                agents[name] = await (
                    LLMAgentBuilder()
                    .with_provider(OpenAICompatibleProvider(base_url=base_url, api_key="bench"))
                    .with_model("bench").with_sliding_window(2).with_persistence_plugin(plugin)
                    .build_async()
                )
            variants = {"bare_sdk": lambda: bare_sdk(client)} | {
                name: (lambda a=a: through_mofa(a)) for name, a in agents.items()
            }
            walls: dict[str, list[float]] = {k: [] for k in variants}
            ttfts: dict[str, list[float]] = {k: [] for k in variants}
            chars: dict[str, int] = {}
            rounds = 5
            try:
                for r in range(rounds):
                    for name, fn in variants.items():
                        for _ in range(warmup if r == 0 else 2):
                            await fn()
                        gc.collect()
                        for _ in range(n // rounds):
                            wall, ttft, chars[name] = await fn()
                            walls[name].append(wall)
                            ttfts[name].append(ttft)
            finally:
                for a in agents.values():
                    await a.aclose()
                await client.close()
                await store.close()
    for name in variants:
        result[name] = {"wall": stats(walls[name]), "ttft": stats(ttfts[name]), "chars": chars[name]}
    base = result["bare_sdk"]
    for name in agents:
        mine = result[name]
        mine["wall_ratio"] = round(mine["wall"]["median_ms"] / base["wall"]["median_ms"], 3)
        mine["wall_ratio_p95"] = round(mine["wall"]["p95_ms"] / base["wall"]["p95_ms"], 3)
        mine["ttft_added_ms"] = round(mine["ttft"]["median_ms"] - base["ttft"]["median_ms"], 4)
        mine["ttft_added_p95_ms"] = round(mine["ttft"]["p95_ms"] - base["ttft"]["p95_ms"], 4)
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    serve(int(sys.argv[2]))
elif __name__ == "__main__":
    asyncio.run(run(sys.argv[1], Mode(quick=True)))
