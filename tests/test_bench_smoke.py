"""The benchmark harness runs: the quick mode of two cheap measurements (resume, turn), no timing asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import need_postgres

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_resume_writes_results(tmp_path: Path) -> None:
    url = need_postgres()
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "resume,turn", "--out", str(out),
         "--no-docs"],
        env={**os.environ, "MOFA_BENCH_DATABASE_URL": url}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results["quick"] is True
    resume = results["measurements"]["resume"]
    assert [p["messages"] for p in resume["points"]] == [10, 1_000, 10_000]
    assert all(p["n"] > 0 and 0 < p["median_ms"] <= p["p95_ms"] for p in resume["points"])
    # the turn's SQL floor sends the store's own statements: a new column must reach it too
    turn = results["measurements"]["turn"]
    assert "error" not in turn, turn.get("error")
    assert all(turn[db]["overhead"]["median_ms"] is not None for db in ("postgres", "sqlite"))
    assert results["machine"]["postgres"]
    # the throwaway schemas are gone
    import psycopg

    with psycopg.connect(url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'mofa_bench_resume_%'"
        ).fetchone()
    assert left == (0,)
