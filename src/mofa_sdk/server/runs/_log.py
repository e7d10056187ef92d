"""A run's event log as the database holds it: the reply row.

The database form is the reply row: its text, and ``metadata["delta_ends"]`` (the cumulative end offset of
each delta, written by ``PersistencePlugin(record_delta_offsets=True)``), so that delta ``n`` is
``text[ends[n-2]:ends[n-1]]``. The terminal event is rebuilt from the reply's status and its api-call row.
"""

from __future__ import annotations

from ...entities import LLMApiCall, Message, QueryFilter
from ...persistence import Store
from ._events import TerminalEvent, TextDeltaEvent, terminal_event

__all__ = ["FINAL_STATUSES", "delta_count", "deltas_of_row", "find_call", "terminal_of_row"]

#: reply statuses after which nothing more will be written
FINAL_STATUSES = frozenset({"complete", "cancelled", "error"})


def deltas_of_row(row: Message, after: int) -> list[TextDeltaEvent]:
    """The delta events after number ``after`` that the row's checkpointed text holds."""
    ends = row.metadata.get("delta_ends")
    if not isinstance(ends, list):
        # a reply written without offsets (by the library directly): the whole text is one event
        ends = [len(row.content)] if row.content else []
    out: list[TextDeltaEvent] = []
    for i in range(max(after, 0), len(ends)):
        start = ends[i - 1] if i else 0
        out.append(TextDeltaEvent(i + 1, row.content[start : ends[i]]))
    return out


def delta_count(row: Message) -> int:
    ends = row.metadata.get("delta_ends")
    return len(ends) if isinstance(ends, list) else (1 if row.content else 0)


async def find_call(store: Store, row: Message) -> LLMApiCall | None:
    """The api-call row of a reply (newest first in its session: a recent run's is on the first page)."""
    offset = 0
    while True:
        page = await store.query_api_calls(
            QueryFilter(tenant_id=row.tenant_id, session_id=row.session_id, offset=offset, limit=100)
        )
        for call in page:
            if call.response_message_id == row.id:
                return call
        if len(page) < 100:
            return None
        offset += 100


async def terminal_of_row(store: Store, row: Message, *, after: int = 0) -> TerminalEvent:
    """The terminal event of a reply whose run is over: its final status, or ``interrupted`` when the process
    that ran it is gone. A follower may have seen more deltas (``after``) than a dead owner checkpointed: its
    terminal event still comes after them, and says how many the saved reply holds."""
    n = delta_count(row) + 1
    if row.status in FINAL_STATUSES:
        call = await find_call(store, row)
        return terminal_event(
            n, row.status, user_message_id=row.parent_message_id, assistant_message_id=row.id, call=call
        )
    return terminal_event(
        max(n, after + 1), "interrupted", user_message_id=row.parent_message_id, assistant_message_id=row.id,
        code="interrupted",
        message="the process running this reply stopped; the reply is saved as far as it was checkpointed "
        "and reads as interrupted",
        saved_events=delta_count(row),
    )
