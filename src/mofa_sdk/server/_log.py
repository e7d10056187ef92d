"""A run's event log, as one model for the live run and for the database.

Events are numbered: deltas from 1, then one terminal event (``done`` or ``error``) numbered after the last
delta. The database form is the reply row: its text, and ``delta_ends`` (the cumulative end
offset of each delta, written by ``PersistencePlugin(record_delta_offsets=True)``), so that delta ``n`` is
``text[ends[n-2]:ends[n-1]]``. The terminal event is rebuilt from the reply's status and its api-call row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from ..entities import LLMApiCall, Message
from ..persistence import Store

__all__ = ["FINAL_STATUSES", "Event", "deltas_of_row", "find_call", "terminal_event", "terminal_of_row"]

EventKind = Literal["delta", "done", "error"]
#: reply statuses after which nothing more will be written
FINAL_STATUSES = frozenset({"complete", "cancelled", "error"})


@dataclass(frozen=True, slots=True)
class Event:
    n: int
    kind: EventKind
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.kind != "delta"


def deltas_of_row(row: Message, after: int) -> list[Event]:
    """The delta events after number ``after`` that the row's checkpointed text holds."""
    ends = row.delta_ends
    if ends is None:
        # a reply written without offsets (by the library directly): the whole text is one event
        ends = [len(row.content)] if row.content else []
    out: list[Event] = []
    for i in range(max(after, 0), len(ends)):
        start = ends[i - 1] if i else 0
        out.append(Event(i + 1, "delta", {"text": row.content[start : ends[i]]}))
    return out


def delta_count(row: Message) -> int:
    return len(row.delta_ends) if row.delta_ends is not None else (1 if row.content else 0)


def terminal_event(
    n: int,
    status: str,
    *,
    user_message_id: uuid.UUID | None,
    assistant_message_id: uuid.UUID | None,
    call: LLMApiCall | None = None,
    message: str | None = None,
    code: str | None = None,
) -> Event:
    ids = {"user": _s(user_message_id), "assistant": _s(assistant_message_id)}
    data: dict[str, Any] = {"status": status, "message_ids": ids}
    if call is not None:
        data["api_call_id"] = str(call.id)
        data["usage"] = {
            "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
            "total_tokens": call.total_tokens, "estimated": call.tokens_estimated,
        }
        data["latency_ms"] = call.latency_ms
        data["time_to_first_token_ms"] = call.time_to_first_token_ms
    if status in ("complete", "cancelled"):
        return Event(n, "done", data)
    data["error"] = {"code": code or (call.error_code if call else None) or status,
                     "message": message or (call.error_message if call else None) or status}
    return Event(n, "error", data)


def _s(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


async def find_call(store: Store, row: Message) -> LLMApiCall | None:
    """The api-call row of a reply."""
    return await store.get_api_call_for_message(row.tenant_id, row.id)


async def terminal_of_row(store: Store, row: Message, *, after: int = 0) -> Event:
    """The terminal event of a reply whose run is over: its final status, or ``interrupted`` when the process
    that ran it is gone. A follower may have seen more deltas (``after``) than a dead owner checkpointed: its
    terminal event still comes after them, and says how many the saved reply holds."""
    n = delta_count(row) + 1
    if row.status in FINAL_STATUSES:
        call = await find_call(store, row)
        return terminal_event(
            n, row.status, user_message_id=row.parent_message_id, assistant_message_id=row.id, call=call
        )
    event = terminal_event(
        max(n, after + 1), "interrupted", user_message_id=row.parent_message_id, assistant_message_id=row.id,
        code="interrupted",
        message="the process running this reply stopped; the reply is saved as far as it was checkpointed "
        "and reads as interrupted",
    )
    event.data["saved_events"] = delta_count(row)
    return event
