"""SIGTERM (issue 24, item 9): every follower on the stopping process gets a terminal event, or a ``retry``
event when it follows another process's run, before its stream closes; the process exits cleanly."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from tests.server.support import Launcher, auth, make_key, read_events

pytestmark = pytest.mark.slow


async def test_sigterm_ends_every_stream_with_a_terminal_or_retry_event(launcher: Launcher, pg_url: str) -> None:
    a = await launcher.scripted(pg_url, "--grace", "1")
    b = await launcher.scripted(pg_url, "--grace", "1")
    key, _ = await make_key(pg_url)
    async with httpx2.AsyncClient(timeout=30) as client:

        async def start(base: str) -> str:
            r = await client.post(f"{base}/v1/sessions", json={}, headers=auth(key))
            sid = r.json()["id"]
            async with client.stream("POST", f"{base}/v1/sessions/{sid}/messages",
                                     json={"content": "words=200 delay=0.1"}, headers=auth(key)) as started:
                events, _ = await read_events(started, stop_after=1)
            return str(events[0].data["run_id"])

        async def follow(base: str, run_id: str, ready: asyncio.Event) -> list[Any]:
            async with client.stream("GET", f"{base}/v1/runs/{run_id}/events", headers=auth(key)) as r:
                events, _ = await read_events(r, stop_after=1)
                ready.set()
                more, _ = await read_events(r)
            return [*events, *more]

        on_b, on_a = await start(b.url), await start(a.url)
        ready = [asyncio.Event(), asyncio.Event()]
        local = asyncio.create_task(follow(b.url, on_b, ready[0]))  # B's own run, followed on B
        remote = asyncio.create_task(follow(b.url, on_a, ready[1]))  # A's run, followed on B
        await asyncio.gather(*(e.wait() for e in ready))
        b.proc.terminate()
        local_events, remote_events = await asyncio.gather(local, remote)
        assert local_events[-1].event == "done" and local_events[-1].data["status"] == "cancelled", local_events[-1]
        assert [e.id for e in local_events] == list(range(1, len(local_events) + 1))
        assert remote_events[-1].event == "retry" and remote_events[-1].data["reason"] == "shutdown"
        assert await asyncio.to_thread(b.proc.wait, 30) in (0, -15)  # uvicorn re-raises the signal it handled
        assert "Traceback" not in b.log.read_text(), b.log.read_text()[-3000:]
        # the run of the other process goes on; a follower there resumes after what it saw on B
        last = remote_events[-2].id
        async with client.stream("GET", f"{a.url}/v1/runs/{on_a}/events",
                                 headers={**auth(key), "Last-Event-ID": str(last)}) as r:
            resumed, _ = await read_events(r, stop_after=1)
        assert resumed[0].id == last + 1
        assert (await client.post(f"{a.url}/v1/runs/{on_a}/cancel", headers=auth(key))).status_code == 200
