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


def test_growth_generator_builds_a_skewed_database() -> None:
    """bench/growth_data.py at a tiny size: the rows, the skew and the library's indexes are there."""
    import uuid

    import psycopg

    url = need_postgres()
    name = f"mofa_t_growth_{uuid.uuid4().hex[:10]}"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "growth_data.py"), url, "1000", name],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True, timeout=120,
    )
    try:
        assert proc.returncode == 0, proc.stderr
        db_url = url.rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(db_url) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM entity_message), (SELECT count(*) FROM entity_api_call),"
                " (SELECT count(DISTINCT tenant_id) FROM entity_session),"
                " (SELECT count(*) FROM entity_session WHERE user_id = '00000000-0000-4000-8000-0000000b1701'),"
                " (SELECT count(*) FROM pg_indexes WHERE indexname = 'entity_session_user_recent_id_idx'),"
                " (SELECT count(*) FROM mofa_migrations WHERE name = '0011_read_path_indexes')"
            ).fetchone()
        assert counts is not None
        # ten messages a session, an api call per reply, the big user a fiftieth of the sessions; the schema
        # made by the library's own migrations, indexes rebuilt after the load
        assert counts == (1000, 500, 3, 2, 1, 1)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
