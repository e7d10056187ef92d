"""Usage by day and model (``GET /v1/usage/daily``): the api-call rows of a window, grouped in Python.

The stores answer one aggregate per query (``get_statistics``); the web page's chart wants one per day and
model, so the rows of the window are read in pages and grouped here, percentiles as the stores compute them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from ...._stats import percentile_cont
from ....entities import LLMApiCall, QueryFilter
from ....persistence import Store
from .schemas import UsageDaily, UsageDay

__all__ = ["MAX_CALLS", "usage_daily"]

#: the most rows one request groups: past it the answer says ``truncated`` (the oldest days are short)
MAX_CALLS = 100_000
_PAGE = 10_000


def _group(day: date, model: str, calls: list[LLMApiCall]) -> UsageDay:
    by_status: dict[str, int] = defaultdict(int)
    for c in calls:
        by_status[c.status] += 1
    ttft = [float(c.time_to_first_token_ms) for c in calls if c.time_to_first_token_ms is not None]
    latency = [float(c.latency_ms) for c in calls if c.latency_ms is not None]
    return UsageDay(
        day=day, model=model, calls=len(calls), calls_by_status=dict(by_status),
        prompt_tokens=sum(c.prompt_tokens for c in calls), completion_tokens=sum(c.completion_tokens for c in calls),
        total_tokens=sum(c.total_tokens for c in calls),
        p50_time_to_first_token_ms=percentile_cont(ttft, 0.5), p95_time_to_first_token_ms=percentile_cont(ttft, 0.95),
        p50_latency_ms=percentile_cont(latency, 0.5), p95_latency_ms=percentile_cont(latency, 0.95),
    )


async def usage_daily(store: Store, query: QueryFilter, days: int, now: datetime | None = None) -> UsageDaily:
    """The last ``days`` UTC days up to today (``query``'s times are replaced by that window)."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    groups: dict[tuple[date, str], list[LLMApiCall]] = defaultdict(list)
    offset, read, truncated = 0, 0, False
    while True:
        page = await store.query_api_calls(
            query.model_copy(update={"start_time": start, "end_time": end, "offset": offset, "limit": _PAGE})
        )
        for call in page:
            groups[(call.create_time.astimezone(UTC).date(), call.model_name)].append(call)
        read += len(page)
        if len(page) < _PAGE:
            break
        if read >= MAX_CALLS:
            truncated = True
            break
        offset += _PAGE
    rows = [_group(day, model, calls) for (day, model), calls in sorted(groups.items())]
    return UsageDaily(start=first, end=today, rows=rows, truncated=truncated)
