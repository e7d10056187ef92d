"""``mofa usage``: LLM call statistics from the api-call records, with a small chart."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from .._stats import percentile_cont as percentile
from ..entities import QueryFilter, UsageStatistics
from ..errors import ConfigError
from ..ids import parse_uuid, utc_now
from ..persistence import UsageGroup, UsageKey
from ._common import DbOpt, TenantOpt, console, flag, open_store, resolve_tenant, resolve_user, run

__all__ = ["parse_since", "percentile", "usage"]

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_BAR = 40


def parse_since(value: str, now: datetime) -> datetime | None:
    """``7d``, ``24h``, ``30m``, ``2w``, ``all`` (None) or an ISO date/time (UTC unless it says otherwise)."""
    text = value.strip().lower()
    if text == "all":
        return None
    m = _DURATION.match(text)
    if m:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):  # past year 1, or too many digits for an int
            raise ConfigError(
                f"--since {value.strip()} reaches back before the year 1; use 'all' for every record"
            ) from None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--since must be a duration (30m, 24h, 7d, 2w), 'all' or an ISO date, got {value!r}"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def _summary(stats: UsageStatistics) -> Table:
    table = Table(show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    # a reply the user stopped is not a failure of the model: counted apart
    errors = {k: v for k, v in sorted(stats.calls_by_status.items()) if k not in ("success", "cancelled")}
    cancelled = stats.calls_by_status.get("cancelled", 0)
    table.add_row(
        "calls",
        f"{stats.total_calls:,} ({stats.success_calls:,} ok, {sum(errors.values()):,} failed, "
        f"{cancelled:,} cancelled)",
    )
    table.add_row("errors by status", ", ".join(f"{k} {v:,}" for k, v in errors.items()) or "none")
    table.add_row(
        "tokens",
        f"{stats.total_tokens:,} ({stats.prompt_tokens:,} prompt + {stats.completion_tokens:,} completion)",
    )
    table.add_row("latency", f"p50 {_ms(stats.p50_latency_ms)} · p95 {_ms(stats.p95_latency_ms)}")
    table.add_row(
        "time to first token",
        f"p50 {_ms(stats.p50_time_to_first_token_ms)} · p95 {_ms(stats.p95_time_to_first_token_ms)}",
    )
    if stats.avg_tokens_per_second is not None:
        table.add_row("speed", f"{stats.avg_tokens_per_second:,.1f} tokens/s on average")
    if stats.total_price:
        table.add_row("price", f"{stats.total_price:,.4f}")
    return table


def _breakdown(groups: Sequence[UsageGroup], by: str, names: dict[uuid.UUID, str]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for col in (by, "calls", "errors", "cancelled", "tokens", "latency p50/p95", "ttft p50/p95"):
        table.add_column(col, justify="left" if col == by else "right", no_wrap=True)
    for g in groups:  # the store's order: most calls first
        if by == "model":
            key = g.model_name or "-"
        else:
            key = "-" if g.agent_id is None else names.get(g.agent_id, f"{str(g.agent_id)[:8]} (no agent row)")
        table.add_row(
            key,
            f"{g.calls:,}",
            Text(f"{g.errors:,}", style="red" if g.errors else ""),
            Text(f"{g.cancelled:,}", style="yellow" if g.cancelled else ""),
            f"{g.total_tokens:,}",
            f"{_ms(g.p50_latency_ms)} / {_ms(g.p95_latency_ms)}",
            f"{_ms(g.p50_time_to_first_token_ms)} / {_ms(g.p95_time_to_first_token_ms)}",
        )
    return table


def _bucket(span: timedelta) -> tuple[UsageKey, timedelta]:
    if span <= timedelta(days=2):
        return "hour", timedelta(hours=1)
    if span <= timedelta(days=45):
        return "day", timedelta(days=1)
    return "week", timedelta(weeks=1)


def _floor(when: datetime, unit: str) -> datetime:
    when = when.astimezone(UTC)
    if unit == "hour":
        return when.replace(minute=0, second=0, microsecond=0)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if unit == "week" else day


def _chart(groups: Sequence[UsageGroup], unit: str, first: datetime, end: datetime) -> Table:
    """Calls per hour, day or week as horizontal bars; the red part is calls that failed (a cancelled
    reply is not a failure: it counts as a call)."""
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}[unit]
    calls = {g.start: g.calls for g in groups if g.start is not None}
    bad = {g.start: g.errors for g in groups if g.start is not None}
    slots: list[datetime] = []
    t = _floor(first, unit)
    while t <= end and len(slots) < 400:
        slots.append(t)
        t += step
    slots = slots[-40:]  # the most recent buckets fit a terminal
    peak = max((calls.get(s, 0) for s in slots), default=0) or 1
    fmt = {"hour": "%m-%d %H:00", "day": "%Y-%m-%d", "week": "%Y-%m-%d"}[unit]
    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(no_wrap=True, style="dim")
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for s in slots:
        total, errors = calls.get(s, 0), bad.get(s, 0)
        width = round(_BAR * total / peak)
        red = min(width, round(_BAR * errors / peak)) if errors else 0
        bar = Text("█" * (width - red), style="green")
        bar.append("█" * red, style="red")
        if total and width == 0:
            bar.append("▏", style="green")
        table.add_row(s.strftime(fmt), bar, str(total))
    table.title = f"calls per {unit}"
    return table


def usage(
    since: Annotated[
        str, typer.Option("--since", help="Period: 30m, 24h, 7d, 2w, all or an ISO date.")
    ] = "7d",
    by: Annotated[str, typer.Option("--by", help="Break down by agent or model.")] = "agent",
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent code.", show_default=False)
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.", show_default=False)] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", metavar="ID", help="Only this session (an id, its start or its short id).",
                     show_default=False),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user (default: every user).", show_default=False)
    ] = None,
    chart: Annotated[bool, flag("--chart/--no-chart", help="Show calls over time.")] = True,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """LLM call statistics of the tenant: calls, errors, tokens, latency and time to first token."""

    async def go() -> None:
        if by not in ("agent", "model"):
            raise ConfigError(f"--by must be agent or model, got {by!r}")
        tid = resolve_tenant(tenant)
        now = utc_now()
        start = parse_since(since, now)
        async with open_store(db, read_only=True) as store:
            names = {a.id: a.agent_code for a in await store.list_agents(tid)}
            agent_id = None
            if agent is not None:
                found = await store.get_agent_by_code_and_tenant(tid, agent)
                if found is None:
                    raise ConfigError(f"no agent with code {agent!r} in tenant {tid}; see `mofa agents list`")
                agent_id = found.id
            session_id = None
            if session:
                # a whole id is taken as it is (any user's); a prefix or short id names one of this user's
                try:
                    session_id = parse_uuid(session, "--session")
                except ConfigError:
                    from ._sessions import resolve_session

                    session_id = (await resolve_session(store, tid, resolve_user(user), session)).id
            query = QueryFilter(
                tenant_id=tid,
                start_time=start,
                end_time=None,
                agent_id=agent_id,
                model_name=model,
                session_id=session_id,
                user_id=parse_uuid(user, "--user") if user else None,
            )
            # everything aggregated in the database: a busy month is a few dozen rows, not every call
            stats = await store.get_statistics(query)
            groups = await store.usage_breakdown(query, "model" if by == "model" else "agent")
            timeline: list[UsageGroup] = []
            first = start
            if chart and stats.total_calls:
                if first is None:  # all time: the span starts at the oldest call
                    oldest = await store.usage_breakdown(query, "week")
                    first = oldest[0].start if oldest and oldest[0].start else now
                unit, _ = _bucket(now - first)
                timeline = await store.usage_breakdown(query, unit)
        period = "all time" if start is None else f"since {start.strftime('%Y-%m-%d %H:%M UTC')}"
        console.print(Text(f"LLM usage · tenant {tid} · {period}", style="bold"))
        if not stats.total_calls:
            console.print("no LLM calls recorded in this period", style="dim")
            return
        console.print(_summary(stats))
        console.print()
        console.print(_breakdown(groups, by, names))
        if timeline and first is not None:
            console.print()
            console.print(_chart(timeline, _bucket(now - first)[0], first, now))

    run(go())
