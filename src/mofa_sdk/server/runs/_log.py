"""A run's event log as the database holds it: the reply row.

The database form is the reply row: its text, and ``delta_ends`` (the cumulative end offset of
each delta, written by ``PersistencePlugin(record_delta_offsets=True)``), so that delta ``n`` is
``text[ends[n-2]:ends[n-1]]``; then, for a reply that ends in tool calls (saved with the final write), each
call as three events: started, its whole arguments as one fragment, done. A live log streams a call's
arguments in many fragments, so a replay from the row numbers the events after a reply's text its own way;
a follower that saw part of a call live is given the rest of the row's events after the number it had. The
terminal event is rebuilt from the reply's status and its api-call row.
"""

from __future__ import annotations

from ...entities import LLMApiCall, Message
from ...persistence import Store
from ._events import (
    TerminalEvent,
    TextDeltaEvent,
    ToolArgumentsEvent,
    ToolCallDoneEvent,
    ToolCallStartedEvent,
    ToolEvent,
    terminal_event,
)

__all__ = ["FINAL_STATUSES", "delta_count", "deltas_of_row", "events_of_row", "find_call", "terminal_of_row"]

#: reply statuses after which nothing more will be written
FINAL_STATUSES = frozenset({"complete", "cancelled", "error"})


def deltas_of_row(row: Message, after: int) -> list[TextDeltaEvent]:
    """The text delta events after number ``after`` that the row's checkpointed text holds."""
    ends = row.delta_ends
    if ends is None:
        # a reply written without offsets (by the library directly): the whole text is one event
        ends = [len(row.content)] if row.content else []
    out: list[TextDeltaEvent] = []
    for i in range(max(after, 0), len(ends)):
        start = ends[i - 1] if i else 0
        out.append(TextDeltaEvent(i + 1, row.content[start : ends[i]]))
    return out


def events_of_row(row: Message, after: int) -> list[TextDeltaEvent | ToolEvent]:
    """The events after number ``after`` that the row holds: its checkpointed text's deltas, then its calls."""
    out: list[TextDeltaEvent | ToolEvent] = [*deltas_of_row(row, after)]
    n = len(row.delta_ends) if row.delta_ends is not None else (1 if row.content else 0)
    for index, call in enumerate(row.tool_calls):
        for event in (ToolCallStartedEvent(n + 1, index, call.id, call.name),
                      ToolArgumentsEvent(n + 2, index, call.arguments),
                      ToolCallDoneEvent(n + 3, index, call.id, call.name, call.arguments)):
            if event.n > after:
                out.append(event)
        n += 3
    return out


def delta_count(row: Message) -> int:
    """How many events (deltas, then three per tool call) the row holds."""
    text = len(row.delta_ends) if row.delta_ends is not None else (1 if row.content else 0)
    return text + 3 * len(row.tool_calls)


async def find_call(store: Store, row: Message) -> LLMApiCall | None:
    """The api-call row of a reply (by index)."""
    return await store.get_api_call_for_message(row.tenant_id, row.id)


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
