"""Statistics computed in Python where a database would use SQL (the memory and SQLite stores, the CLI)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile_cont"]


def percentile_cont(values: Sequence[float], fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the two nearest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    pos = fraction * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
