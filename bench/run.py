"""Run the benchmarks (``make bench``): writes bench/results/latest.json, docs/benchmarks.md and the plot.

``python bench/run.py [--quick] [--only turn,resume,...] [--out FILE] [--no-docs]``. PostgreSQL comes from
``MOFA_BENCH_DATABASE_URL``, else ``scripts/ensure_postgres.sh``; each measurement works in a schema of its
own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Mode  # noqa: E402
from report import write_docs, write_plot  # noqa: E402

MEASUREMENTS = ("turn", "resume", "streaming", "load", "peers", "serve", "growth")


def database_url() -> str:
    url = os.environ.get("MOFA_BENCH_DATABASE_URL", "").strip()
    if url:
        return url
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure_postgres.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def machine(url: str) -> dict[str, Any]:
    import psycopg

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": row[0] if row else None,
        "postgres_synchronous_commit": sync[0] if sync else None,
        "postgres_host": "loopback (same machine)",
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "packages": {p: _version(p) for p in ("mofa-sdk", "psycopg", "psycopg-pool", "openai", "aiosqlite")},
    }


def _version(p: str) -> str | None:
    try:
        return version(p)
    except Exception:
        return None


async def measure(names: list[str], url: str, mode: Mode) -> dict[str, Any]:
    import importlib

    out: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(name)
        try:
            out[name] = await module.run(url, mode)
        except Exception as exc:  # one broken measurement must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"bench: {name} done in {out[name]['seconds']} s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few samples, small histories")
    ap.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated: " + ",".join(MEASUREMENTS))
    ap.add_argument("--out", type=Path, help="default: bench/results/latest.json (quick.json with --quick)")
    ap.add_argument("--no-docs", action="store_true", help="write only the JSON (always so with --quick)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other measurements of the existing results file (re-run only --only)")
    args = ap.parse_args(argv)
    # a smoke run never replaces the published results
    args.out = args.out or HERE / "results" / ("quick.json" if args.quick else "latest.json")
    args.no_docs = args.no_docs or args.quick
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        ap.error(f"unknown measurement(s): {', '.join(unknown)}")
    url = database_url()
    started = time.perf_counter()
    results = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(url),
        "measurements": asyncio.run(measure(names, url, Mode(args.quick))),
    }
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.merge and args.out.exists():
        old = json.loads(args.out.read_text())
        results["measurements"] = {**old.get("measurements", {}), **results["measurements"]}
        # a file merged before keeps the date of the run its other measurements come from
        results["merged_into"] = old.get("merged_into") or {
            "generated": old.get("generated"), "total_seconds": old.get("total_seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: wrote {args.out}", file=sys.stderr)
    if not args.no_docs:
        existing = HERE / "results" / "resume.png"
        # without matplotlib (the bench extra) a merged run keeps the plot of the resume results it kept
        plot = write_plot(results, existing) or (existing if args.merge and existing.exists() else None)
        doc = write_docs(results, ROOT / "docs" / "benchmarks.md", plot)
        print(f"bench: wrote {doc}" + (f" and {plot}" if plot else ""), file=sys.stderr)
    failed = [n for n, r in results["measurements"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
