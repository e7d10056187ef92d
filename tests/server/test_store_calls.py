"""The store calls of one ``POST /v1/responses`` chain turn (``previous_response_id``, ``stream: true``), traced by
``bench/store_calls.py``: at most 13 in all (the key's check included), and none made by a route once the turn
is handed to the run engine (issue 21). Issue 24 added two: the session's claim (in the transaction of the user
message) and its release when the turn ends, which make "one turn per session" the database's decision."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.server.support import ROOT

LIMIT = 13


def test_a_chain_turn_makes_at_most_13_store_calls_and_the_route_none_after_the_run_starts() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "store_calls.py"), "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)
    calls = [(c["method"], c["caller"]) for c in trace["calls"]]
    shown = "\n".join(f"{m} {c}" for m, c in calls)
    assert len(calls) <= LIMIT, shown
    start = trace["run_starts_after"]
    assert start is not None, shown
    assert not [c for c in calls[start:] if c[1].startswith("mofa_sdk.server.api.")], shown
    # what the request already has is not read again: the session once, the previous response's row once
    assert [m for m, _ in calls].count("get_session") == 1, shown
    assert [m for m, _ in calls].count("get_message") == 1, shown
