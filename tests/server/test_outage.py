"""A PostgreSQL outage longer than the pool's wait (issue 24, item 6), on a cluster of the test's own: a follower
on the other process waits and resumes, ending with the run's terminal event, never a cut stream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2
import pytest

from tests.server.support import Launcher, auth, make_key, read_events, saved_reply
from tests.support.pg_cluster import PgCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    c = PgCluster().start()
    try:
        yield c
    finally:
        c.destroy()


async def test_a_follower_on_the_other_process_outlives_a_database_outage(
    launcher: Launcher, cluster: PgCluster
) -> None:
    url = cluster.url()
    a = await launcher.scripted(url, "--lease", "1.5")
    b = await launcher.scripted(url, "--lease", "1.5")
    key, row = await make_key(url)
    async with httpx2.AsyncClient(timeout=90) as client:
        sid = (await client.post(f"{a.url}/v1/sessions", json={}, headers=auth(key))).json()["id"]
        async with client.stream("POST", f"{a.url}/v1/sessions/{sid}/messages",
                                 json={"content": "words=40 delay=0.5"}, headers=auth(key)) as started:
            first, _ = await read_events(started, stop_after=1)
        run_id = first[0].data["run_id"]
        async with client.stream("GET", f"{b.url}/v1/runs/{run_id}/events", headers=auth(key)) as r:
            events, _ = await read_events(r, stop_after=2)
            await asyncio.to_thread(cluster.stop, "fast")
            await asyncio.sleep(12)  # longer than the pool's 10 s wait for a connection
            await asyncio.to_thread(cluster.start)
            more, _ = await read_events(r)
        events += more
        assert events[-1].event in ("done", "error"), events[-3:]
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        if events[-1].data["status"] == "complete":
            reply = await saved_reply(url, row.tenant_id, run_id)
            assert reply is not None and "".join(e.data["text"] for e in events[:-1]) == reply.content
        # reads work again from the first request after the restart (the pool recovered)
        r2 = await client.get(f"{b.url}/v1/sessions/{sid}/messages", headers=auth(key))
        assert r2.status_code == 200, r2.text
