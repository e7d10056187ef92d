"""The kill -9 loss bound under load (issue 24, item 7): ``python bench/kill_loss.py --db URL [--runs 300]``.

Two served processes (``tests/server/_app.py``, scripted provider) on a fresh PostgreSQL schema. ``--runs``
concurrent streaming runs, each on its own session, all owned by the victim process and each followed by a
client; once all stream, after ``--after`` more seconds the victim is killed with SIGKILL. Then, for every
run: the last event number its client saw against how many deltas the saved reply holds (``delta_ends``,
what the checkpoints wrote), and the reply's status once the survivor's sweep has passed. Prints one JSON document:

- ``missing_rows``: runs whose client saw deltas and whose reply row does not exist (the issue saw 16 of 300);
- ``lost_deltas`` / ``lost_seconds``: what clients saw that the database does not hold (per run: max, p50,
  p99; seconds = deltas x the provider's pace), against the documented bound of one checkpoint interval;
- ``statuses``: the replies' statuses after the sweep (all ``interrupted`` expected, none ``streaming``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _common import pg_schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mofa_sdk.persistence import PostgresStore, issue_api_key  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start(url: str, lease: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.server._app", "--db", url, "--port", str(port),
                             "--lease", str(lease)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    async with httpx2.AsyncClient() as c:
        for _ in range(600):
            try:
                if (await c.get(f"{base}/healthz")).status_code == 200:
                    return proc, base
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not come up")


async def _follow(client: httpx2.AsyncClient, base: str, key: str, sid: str, content: str,
                  seen: dict[str, int], ids: dict[str, str]) -> None:
    """Start a run and read it until its stream is cut; ``seen[sid]``: the last event number read."""
    seen[sid] = 0
    try:
        async with client.stream("POST", f"{base}/v1/sessions/{sid}/messages", json={"content": content},
                                 headers={"Authorization": f"Bearer {key}"}) as r:
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    seen[sid] = int(line[4:])
                elif line.startswith("data: ") and '"run_id"' in line:
                    ids[sid] = json.loads(line[6:])["run_id"]
    except httpx2.HTTPError:
        pass  # the victim died: the stream is cut


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"max": 0.0, "p50": 0.0, "p99": 0.0}
    ordered = sorted(values)
    return {"max": ordered[-1], "p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


async def run(admin_url: str, runs: int, after: float, delay: float, lease: float) -> dict[str, Any]:
    async with pg_schema(admin_url, "kill") as (url, _):
        (victim, vbase), (survivor, _sbase) = await _start(url, lease), await _start(url, lease)
        try:
            store = await PostgresStore.connect(url)
            tenant, user = uuid.uuid4(), uuid.uuid4()
            _, key = await issue_api_key(store, tenant, user, "bench")
            await store.close()
            limits = httpx2.Limits(max_connections=runs + 10, max_keepalive_connections=runs + 10)
            async with httpx2.AsyncClient(timeout=120, limits=limits) as client:
                sids = []
                for _ in range(runs):
                    r = await client.post(f"{vbase}/v1/sessions", json={},
                                          headers={"Authorization": f"Bearer {key}"})
                    sids.append(r.json()["id"])
                seen: dict[str, int] = {}
                ids: dict[str, str] = {}
                content = f"words=3000 delay={delay}"
                tasks = [asyncio.create_task(_follow(client, vbase, key, s, content, seen, ids)) for s in sids]
                began = time.monotonic()  # every run started and streaming (bounded), then ``after`` more
                while time.monotonic() - began < 120 and (len(ids) < runs or min(seen.values()) < 1):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                started_in = time.monotonic() - began
                await asyncio.sleep(after)
                victim.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                victim.wait(10)
                await asyncio.wait(tasks, timeout=30)
            await asyncio.sleep(2 * lease + 2)  # the survivor's sweep: leases expired one more lease ago
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute("SELECT id::text, status, delta_ends FROM entity_message"
                                         " WHERE role = 'assistant'")
                rows = {r[0]: (r[1], len(r[2] or [])) for r in await cur.fetchall()}
            lost: list[float] = []
            missing = 0
            statuses: dict[str, int] = {}
            for sid in sids:
                rid = ids.get(sid)
                got = rows.get(rid) if rid else None
                if got is None:
                    missing += seen.get(sid, 0) > 0
                    continue
                statuses[got[0]] = statuses.get(got[0], 0) + 1
                lost.append(max(0, seen[sid] - got[1]))
            return {
                "runs": runs, "killed_after_s": after, "provider_delta_interval_s": delay, "lease_s": lease,
                "started": len(ids), "all_streaming_after_s": round(started_in, 1), "missing_rows": missing,
                "statuses": statuses,
                "events_seen": _dist([float(seen[s]) for s in sids]),
                "lost_deltas": _dist(lost), "lost_seconds": _dist([n * delay for n in lost]),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sweep_wait_s": round(time.monotonic() - killed, 1),
            }
        finally:
            for p in (victim, survivor):
                if p.poll() is None:
                    p.terminate()
                    p.wait(15)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", default=os.environ.get("MOFA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test"))
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--after", type=float, default=3.0, help="seconds of streaming (all runs) before the kill")
    p.add_argument("--delay", type=float, default=0.1, help="seconds between a run's deltas")
    p.add_argument("--lease", type=float, default=5.0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(run(a.db, a.runs, a.after, a.delay, a.lease)), indent=2))


if __name__ == "__main__":
    main()
