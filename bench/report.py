"""docs/benchmarks.md and the resume plot, generated from the results (never edited by hand)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# What profiling (pyinstrument, EXPLAIN ANALYZE) found behind each target that can be missed, and what
# would close it. Printed in "Gaps" only for the targets this run missed.
GAPS = {
    "turn_pg": (
        "PostgreSQL turn overhead. The floor and the library both pay two WAL flushes per turn (the user "
        "message commits before the provider is called; the reply and its api-call row commit together), "
        "so the difference is client-side Python. Already done: shallow copies of saved rows, and a pool "
        "liveness check that costs a round trip only when the socket shows the server left. What "
        "pyinstrument still shows: two pool check-outs/returns (`psycopg_pool`), the "
        "`asynccontextmanager` layers of `_conn`, and building `Message`/`LLMApiCall` models with "
        "validation. Closing it: one hand-written connection context instead of nested generator context "
        "managers, and `model_construct` for rows the plugin builds from already-validated parts."
    ),
    "turn_sqlite": (
        "SQLite turn overhead. The floor's statements take tens of µs each; every aiosqlite call is a hop "
        "to its worker thread and back. Already done: statements bound by position, and no savepoint around "
        "a one-statement write inside a transaction. Left: the reply's own save inside the turn's "
        "transaction (the seq, then the row) keeps its SAVEPOINT/RELEASE pair (2 hops), and the same model "
        "copies as on PostgreSQL. Closing it: run the whole write of a turn as one function on the aiosqlite "
        "thread (one hop)."
    ),
    "resume": (
        "Resume cost grows with history. The window read is a backward index scan of a few rows and "
        "settling replies left `streaming` uses the partial index of migration 0002; profile "
        "`build_async()` on the largest session (pyinstrument) to find what still grows."
    ),
    "stream_wall": (
        "Streaming wall time. Both sides spend most of the time in the `openai` SDK (httpx2 reads, one "
        "pydantic model per chunk); the agent adds one async generator hop per delta and the final "
        "transaction. With 5 ms checkpoints each checkpoint UPDATE is awaited on the token path."
    ),
    "stream_ttft": (
        "Time to first token. The user message is written (one INSERT and its WAL flush) before the "
        "request is sent, as the design requires, so the first token waits for one commit. Closing it: "
        "send the request and write the user message concurrently, and hold the first delta until the "
        "write is done (still 'saved before the reply'); or relax to 'saved before the reply is saved'."
    ),
    "peers": (
        "Against the fastest peer at turn 10. On an 18-message history langchain-postgres does what the "
        "SQL floor does (a read and two committed inserts on one raw connection), so a 2x is out of reach "
        "for any client that commits twice per turn: compare its turn-10 time with the turn measurement's "
        "SQL floor. mofa's remaining distance to the floor is the Python overhead described under turn "
        "overhead. The 2x appears as history grows (turn 1,000), because the peers read or rewrite the "
        "whole history each turn while mofa reads a fixed window through an index. A 2x at turn 10 would "
        "need one commit per turn (writing the user message with the reply, which gives up the design's "
        "guarantee that the user message is stored before the provider is called) or "
        "`synchronous_commit = off`, which trades durability of the last few turns."
    ),
    "peers_growth": (
        "mofa's turn cost grows with history: see the resume gap (the same unindexed settle scan)."
    ),
}


def _ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def targets(m: dict[str, Any]) -> list[tuple[str, str, str, str, str | None]]:
    """(measurement, target, measured, verdict, gap key when missed)."""
    rows: list[tuple[str, str, str, str, str | None]] = []
    t = m.get("turn", {})
    for db, key in (("postgres", "turn_pg"), ("sqlite", "turn_sqlite")):
        if db in t:
            r = t[db]["ratio_to_floor"]
            rows.append((f"1. Turn overhead, {db}", "overhead <= 1.2x the SQL floor",
                         f"{r:.2f}x (p95 {t[db]['ratio_to_floor_p95']:.2f}x)", _ok(r <= 1.2),
                         None if r <= 1.2 else key))
    r = m.get("resume", {})
    if "points" in r:
        ratio = r["ratio_largest_to_smallest"]
        rows.append((f"2. Resume, {r['largest']:,} vs 10 messages", "t(largest) / t(10) <= 1.5",
                     f"{ratio:.2f}x (p95 {r['ratio_largest_to_smallest_p95']:.2f}x)", _ok(ratio <= 1.5),
                     None if ratio <= 1.5 else "resume"))
    s = m.get("streaming", {})
    for name, label in (("mofa", "default checkpoints"), ("mofa_checkpoint_5ms", "checkpoint every 5 ms")):
        if name in s:
            w, ttft = s[name]["wall_ratio"], s[name]["ttft_added_ms"]
            rows.append((f"3. Streaming {s['chunks']:,} chunks, {label}", "wall <= 1.10x bare SDK",
                         f"{w:.2f}x (p95 {s[name]['wall_ratio_p95']:.2f}x)", _ok(w <= 1.10),
                         None if w <= 1.10 else "stream_wall"))
            rows.append((f"3. Time to first token, {label}", "added <= 1 ms",
                         f"{ttft:+.2f} ms (p95 {s[name]['ttft_added_p95_ms']:+.2f} ms)", _ok(ttft <= 1.0),
                         None if ttft <= 1.0 else "stream_ttft"))
    ld = m.get("load", {})
    if "errors" in ld:
        rows.append((f"4. Load, {ld['sessions']} sessions x {ld['turns_per_session']} turns, pool "
                     f"{ld['pool_size']}", "0 errors", f"{ld['errors']} errors, {ld['turns_per_second']:,} "
                     "turns/s", _ok(ld["errors"] == 0), None))
    p = m.get("peers", {})
    if "speedup_vs_fastest" in p:
        sp = p["speedup_vs_fastest"]
        rows.append(("5. Peers, turn 10", "mofa >= 2x faster than the fastest peer",
                     f"{sp:.2f}x vs {p['peers'][p['fastest_peer']]['name']}", _ok(sp >= 2),
                     None if sp >= 2 else "peers"))
        if "speedup_vs_fastest_at_1000" in p:
            sp = p["speedup_vs_fastest_at_1000"]
            rows.append(("5. Peers, turn 1,000", "mofa >= 2x faster than the fastest peer",
                         f"{sp:.2f}x", _ok(sp >= 2), None if sp >= 2 else "peers"))
        g = p["peers"]["MofaStore"].get("growth")
        if g is not None:
            rows.append(("5. mofa cost as history grows", "turn 1,000 / turn 10 <= 1.25 (flat)",
                         f"{g:.2f}x", _ok(g <= 1.25), None if g <= 1.25 else "peers_growth"))
    sv = m.get("serve", {})
    if "load" in sv:
        ld = sv["load"]
        ok = ld["errors"] == 0 and ld["saved_complete"] == ld["runs"]
        rows.append((f"6. Service load, {ld['runs']} concurrent streaming runs", "0 errors, every reply saved",
                     f"{ld['errors']} errors, {ld['saved_complete']}/{ld['runs']} saved", _ok(ok), None))
    return rows


def write_docs(results: dict[str, Any], path: Path, plot: Path | None) -> Path:
    m, mach = results["measurements"], results["machine"]
    rows = targets(m)
    out = ["# Benchmarks", "",
           "Generated by `make bench` (`python bench/run.py`) from `bench/results/latest.json`; do not edit "
           "by hand. Every figure is a median over repeated runs after a warm-up, p95 beside it; variants "
           "that are compared ran interleaved, in one process, on the same machine and database.", ""]
    if results.get("quick"):
        out += ["> **Quick run** (`--quick`): few samples and small histories, a smoke test of the harness, "
                "not a measurement.", ""]
    out += ["## Targets (ratios)", "", "| measurement | target | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d, _ in rows]
    out += ["", "## Machine", "",
            f"{mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB; {mach['os']}; Python "
            f"{mach['python']}; PostgreSQL {mach['postgres']} on loopback (synchronous_commit = "
            f"{mach['postgres_synchronous_commit']}); load average at start {mach['load_average_at_start']:.2f}. "
            f"Run on {results['generated']}, {results['total_seconds']} s in all.", ""]
    if results.get("merged_into"):
        out[-1:] = [f"Only some measurements were re-run then (`--merge`); the others are those of the run of "
                    f"{results['merged_into']['generated']}.", ""]
    out += _absolute(m, plot, path)
    out += growth_section(m.get("growth"))
    missed = [g for *_, g in rows if g]
    out += ["## Gaps", ""]
    if missed:
        out += ["What stands between a missed target and the measurement, found by profiling "
                "(pyinstrument, `EXPLAIN ANALYZE`), and what would close it.", ""]
        out += [f"- {GAPS[g]}" for g in dict.fromkeys(missed)]
    else:
        out += ["None: every target was met in this run."]
    errors = [(k, v["error"]) for k, v in m.items() if "error" in v]
    errors += [(v["name"], v["error"]) for v in m.get("peers", {}).get("peers", {}).values() if "error" in v]
    if errors:
        out += ["", "Could not be measured here:", ""] + [f"- {k}: `{e}`" for k, e in errors]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path


def growth_section(g: dict[str, Any] | None) -> list[str]:
    """### 7. Growth: every read path on the large database against the small one (bench/growth.py)."""
    if not g or "ratios" not in g:
        return []
    small, large = g["small"], g["large"]
    met = sum(1 for r in g["ratios"].values() if r["within_target"])
    out = [f"### 7. Growth: read paths at {large['messages']:,} messages against {small['messages']:,}", "",
           f"Skewed many-tenant databases built by COPY (`bench/growth_data.py`): {large['tenants']:,} tenants, the "
           f"big one with a tenth of the {large['sessions']:,} sessions and a user of it with "
           f"{large['big_user_sessions']:,} (small: {small['tenants']} tenants, {small['sessions']:,} sessions, the "
           f"big user {small['big_user_sessions']:,}). Median of {g['samples']} calls, the two databases sampled "
           "alternately. *fresh*: nothing prepared (planned for its values every call); *after 20 calls*: one "
           "connection with psycopg's default prepare threshold, timed after 20 calls (a generic plan may be in "
           "use). Target: large / small <= 1.5, or <= 5 ms. Deep pages start half way down the big user's list "
           f"({small['deep_page']:,} / {large['deep_page']:,} sessions). {met} of {len(g['ratios'])} operations "
           "within target.", "",
           "Medians in ms; the last column is the ratio of the fastest calls (fresh / after 20), what the plans "
           "cost when the machine's other work does not get in the way.", "",
           "| operation | small fresh | large fresh | ratio | small after 20 | large after 20 | ratio | target |"
           " ratio of minima |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, r in g["ratios"].items():
        a, b = small["ops"][name], large["ops"][name]
        minima = f"{r.get('fresh_min_ms', '-')}x / {r.get('warm_min_ms', '-')}x"
        out.append(f"| {name} | {a['fresh_ms']:.2f} | {b['fresh_ms']:.2f} | {r['fresh_ms']}x | {a['warm_ms']:.2f} | "
                   f"{b['warm_ms']:.2f} | {r['warm_ms']}x | {'met' if r['within_target'] else '**missed**'} | "
                   f"{minima} |")
    out += ["", "| database | size on disk | sessions | messages | api calls | build (COPY + indexes) |",
            "|---|---|---|---|---|---|"]
    for label, d in (("small", small), ("large", large)):
        z = d["sizes"]
        built = "-" if d["build_seconds"] is None else f"{d['build_seconds']:,.0f} s"
        built += " (built by an earlier run)" if d.get("reused", d["build_seconds"] is None) else ""
        out.append(f"| {label} ({d['messages']:,} messages) | {z['database_mb']:,.0f} MB | {z['sessions_mb']:,.0f} MB |"
                   f" {z['messages_mb']:,.0f} MB | {z['api_calls_mb']:,.0f} MB | {built} |")
    out += ["", "Retention: the oldest 10 % of api calls deleted by `cleanup_old_records` (batches of 5,000, each "
            "its own transaction) while a turn loop (two messages and an api call) ran beside it:", "",
            "| database | deleted | seconds | batches | turn before (median) | turns during | during: median / max |",
            "|---|---|---|---|---|---|---|"]
    for label, d in (("small", small), ("large", large)):
        t = d["retention"]
        during = "-" if t["turn_during_median_ms"] is None else (
            f"{t['turn_during_median_ms']:.1f} / {t['turn_during_max_ms']:.1f} ms")
        out.append(f"| {label} | {t['deleted']:,} of {t['of']:,} | {t['seconds']:.2f} | {t['batches']} | "
                   f"{t['turn_before_median_ms']:.1f} ms | {t['turns_during']} | {during} |")
    out += ["", "What is still linear, and why: statistics and `mofa usage` read every api call of the period asked "
            "for (index-only scans of the covering usage indexes, one pass, no JIT), so a month of the big tenant "
            "costs in proportion to that month's calls, not to the database; a daily rollup would make it flat but "
            "could not give exact p50/p95 and is not built. Search: a common word walks the user's messages newest "
            "first and stops at the limit (flat); a mid or rare word is answered by ANDing the user's index entries "
            "(200,000 at 10 M) with the word's posting list (100,000 for the mid word). In the default 4 MB work_mem "
            "that bitmap turned lossy and 28,000 rows were re-checked with to_tsvector (EXPLAIN ANALYZE on the 10 M "
            "database: 813 ms; the first 10 M run measured a 1,966 ms median); search now runs with 64 MB for its "
            "transaction (137 ms in EXPLAIN), but both index scans still grow with the user's history. "
            "Closing it needs an index scoped to the user and ordered by time for every word (a per-user "
            "inverted index, or a btree_gin (tenant_id, user_id, tsvector) index, which needs an extension "
            "the migrations avoid). The OFFSET page is O(offset) by "
            "nature and kept only for existing callers."]
    return [*out, ""]


def _absolute(m: dict[str, Any], plot: Path | None, doc: Path) -> list[str]:
    out = ["## Absolute times (ms)", ""]
    t = m.get("turn", {})
    if "postgres" in t:
        out += ["### 1. Turn overhead", "",
                f"A turn with a zero-latency scripted provider ({t['reply_chars']}-character reply), "
                f"{t['runs']} runs each. Overhead = persisted − bare. Floor = the same statements on one raw "
                "connection (psycopg / aiosqlite).", "",
                "| database | bare turn | persisted turn | overhead | SQL floor | overhead / floor |",
                "|---|---|---|---|---|---|"]
        for db in ("postgres", "sqlite"):
            if db in t:
                r = t[db]
                out.append(
                    f"| {db} | {_ms(r['bare']['median_ms'])} (p95 {_ms(r['bare']['p95_ms'])}) "
                    f"| {_ms(r['persisted']['median_ms'])} (p95 {_ms(r['persisted']['p95_ms'])}) "
                    f"| {_ms(r['overhead']['median_ms'])} (p95 {_ms(r['overhead']['p95_ms'])}) "
                    f"| {_ms(r['floor']['median_ms'])} (p95 {_ms(r['floor']['p95_ms'])}) "
                    f"| {r['ratio_to_floor']:.2f}x |"
                )
        out.append("")
    r = m.get("resume", {})
    if "points" in r:
        out += ["### 2. Resume (`build_async()`, window 2)", "",
                "| messages in the session | resume |", "|---|---|"]
        for p in r["points"]:
            out.append(f"| {p['messages']:,} | {_ms(p['median_ms'])} (p95 {_ms(p['p95_ms'])}) |")
        if plot is not None:
            out += ["", f"![resume latency against history length]({os.path.relpath(plot, doc.parent)})"]
        out.append("")
    s = m.get("streaming", {})
    if "bare_sdk" in s:
        out += [f"### 3. Streaming ({s['chunks']:,} chunks from a loopback SSE server, {s['runs']} runs)", "",
                "| client | wall | time to first token |", "|---|---|---|"]
        for name, label in (("bare_sdk", "bare `openai` SDK"), ("mofa", "mofa agent, persisted"),
                            ("mofa_checkpoint_5ms", "mofa agent, persisted, checkpoint every 5 ms")):
            if name in s:
                v = s[name]
                out.append(f"| {label} | {_ms(v['wall']['median_ms'])} (p95 {_ms(v['wall']['p95_ms'])}) | "
                           f"{_ms(v['ttft']['median_ms'])} (p95 {_ms(v['ttft']['p95_ms'])}) |")
        out.append("")
    ld = m.get("load", {})
    if "latency" in ld:
        out += ["### 4. Load", "",
                f"{ld['sessions']} concurrent sessions x {ld['turns_per_session']} turns on one agent, "
                f"PostgreSQL pool of {ld['pool_size']}, zero-latency provider.", "",
                "| turns/s | turn latency | errors | peak RSS | RSS before | memory per idle session |",
                "|---|---|---|---|---|---|",
                f"| {ld['turns_per_second']:,} | {_ms(ld['latency']['median_ms'])} (p95 "
                f"{_ms(ld['latency']['p95_ms'])}) | {ld['errors']} | {ld['peak_rss_mib']} MiB | "
                f"{ld['rss_before_mib']} MiB | {ld['idle_session_kib']} KiB |", ""]
    p = m.get("peers", {})
    if "peers" in p:
        h = p["histories"]
        out += ["### 5. Peers (read the last 2 rounds, append the user message, append the reply)", "",
                f"Turn 10 = a session holding {h['turn_10']} messages, turn 1,000 = {h['turn_1000']:,}.", "",
                "| library | version | turn 10 | turn 1,000 | growth |", "|---|---|---|---|---|"]
        for v in p["peers"].values():
            if "error" in v and "turn_10" not in v:
                out.append(f"| {v['name']} | {v['version'] or '–'} | not run: {v['error'][:120]} | | |")
                continue
            cells = [f"{_ms(v[s]['median_ms'])} (p95 {_ms(v[s]['p95_ms'])})" if s in v else "–"
                     for s in ("turn_10", "turn_1000")]
            growth = f"{v['growth']:.2f}x" if "growth" in v else "–"
            out.append(f"| {v['name']} | {v['version'] or '–'} | {cells[0]} | {cells[1]} | {growth} |")
        out.append("")
    sv = m.get("serve", {})
    if "load" in sv:
        ld, dl, rs = sv["load"], sv["delta_latency"], sv["resume"]
        out += ["### 6. Service (`mofa serve`)", "",
                "Two served processes (the real app, a fast scripted provider) on one PostgreSQL schema, "
                "driven by httpx2 over loopback (`bench/serve.py`).", "",
                f"**Load**: {ld['runs']} concurrent streaming runs, one session each, one process: "
                f"{ld['errors']} errors, {ld['saved_complete']} of {ld['runs']} replies saved `complete` with "
                f"exactly the streamed text; {ld['wall_s']} s wall ({ld['runs_per_second']} runs/s), a run "
                f"{_ms(ld['run_latency']['median_ms'])} ms (p95 {_ms(ld['run_latency']['p95_ms'])}) as the "
                "client saw it." + (
                    f" The turn as the service ran it (its api-call rows: provider call to final write) took "
                    f"{_ms(ld['server_turn_ms']['median_ms'])} ms (p95 {_ms(ld['server_turn_ms']['p95_ms'])}); "
                    f"the rest of a run's time is its wait to start (key, session and window reads, the user "
                    f"message's commit, 500 at once on one process and a pool of 20) and its delivery. The load "
                    f"generator (httpx2, one process on the same cores) used {ld['client_cpu_s']} s of CPU in "
                    f"those {ld['wall_s']} s." if ld.get("server_turn_ms") else ""), "",
                f"**Latency per delta** (the time a delta was made to the time its consumer had it, "
                f"{dl['runs']} runs of {dl['deltas_per_run']} deltas):", "",
                "| consumer | p50 | p95 |", "|---|---|---|",
                f"| library in-process (`chat_stream`, persisted) | {_ms(dl['library']['median_ms'])} | "
                f"{_ms(dl['library']['p95_ms'])} |",
                f"| service (SSE over loopback HTTP) | {_ms(dl['service']['median_ms'])} | "
                f"{_ms(dl['service']['p95_ms'])} |",
                f"| **added by the service** | **{dl['added_median_ms']:+.3f}** | **{dl['added_p95_ms']:+.3f}** |",
                "", "**Resume latency** (reconnect with `Last-Event-ID: 3` to the first missed event):", "",
                "| reconnect to | p50 | p95 | n |", "|---|---|---|---|"]
        for k, label in (("other_process", "the other process (DB + LISTEN/NOTIFY)"),
                         ("same_process", "the owning process"),
                         ("request_floor", "floor: any authenticated GET (`/v1/runs/{id}`)")):
            if k in rs:
                out.append(f"| {label} | {_ms(rs[k]['median_ms'])} | {_ms(rs[k]['p95_ms'])} | {rs[k]['n']} |")
        out.append("")
    return out


def write_plot(results: dict[str, Any], path: Path) -> Path | None:
    r = results["measurements"].get("resume", {})
    if "points" not in r:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    series = [("as shipped", r["points"], "o-")]
    for label, pts, style in series:
        xs = [p["messages"] for p in pts]
        ax.plot(xs, [p["median_ms"] for p in pts], style, label=f"{label}: median")
        ax.fill_between(xs, [p["median_ms"] for p in pts], [p["p95_ms"] for p in pts], alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("messages in the session")
    ax.set_ylabel("build_async() (ms; band: median to p95)")
    ax.set_title("Resume latency against history length (PostgreSQL, window 2)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
