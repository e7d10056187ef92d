"""Usage aggregated in the database: one row per agent, model or period, whatever the number of calls.

``mofa usage`` used to read every api-call row of the period into Python (80,000 objects for a busy month,
each page re-sorting the period); :meth:`Store.usage_breakdown` returns the groups instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

__all__ = ["USAGE_KEYS", "UsageGroup", "UsageKey"]

#: what calls are grouped by: their agent, their model, or the hour/day/week (UTC) they were made in
UsageKey = Literal["agent", "model", "hour", "day", "week"]
USAGE_KEYS: tuple[str, ...] = get_args(UsageKey)


@dataclass(frozen=True)
class UsageGroup:
    """The calls of one agent, model or period. Exactly one of ``agent_id`` / ``model_name`` / ``start``
    names the group (``agent_id`` None for calls made without an agent). A cancelled call is no error."""

    calls: int
    errors: int
    cancelled: int
    total_tokens: int
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p50_time_to_first_token_ms: float | None = None
    p95_time_to_first_token_ms: float | None = None
    agent_id: uuid.UUID | None = None
    model_name: str | None = None
    start: datetime | None = None
