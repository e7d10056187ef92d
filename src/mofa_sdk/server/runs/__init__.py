"""The run engine of ``mofa serve``: runs, their registry, the typed event log, following, and the bus between
processes. No web framework is imported here and only library errors (``mofa_sdk.errors``) are raised: the
HTTP layer maps them to statuses in one place."""

from ._bus import SUBSCRIPTION_LIMIT, LocalBus, PgBus, Subscription
from ._events import (
    ApiCallFacts,
    RunError,
    RunEvent,
    TerminalEvent,
    TextDeltaEvent,
    Usage,
    event_json,
    event_of_json,
    terminal_event,
)
from ._follow import follow_local, open_follower, owner_answers
from ._log import FINAL_STATUSES, delta_count, deltas_of_row, find_call, terminal_of_row
from ._messages import (
    BusMessage,
    Control,
    Deltas,
    Ended,
    Fragment,
    Heartbeat,
    Resync,
    decode,
    decode_control,
    delta_messages,
    encode,
    encode_control,
)
from ._registry import RunRegistry, cancel_run
from ._run import Principal, Run

__all__ = [
    "FINAL_STATUSES", "SUBSCRIPTION_LIMIT", "ApiCallFacts", "BusMessage", "Control", "Deltas",
    "Ended", "Fragment", "Heartbeat", "LocalBus", "PgBus", "Principal", "Resync", "Run", "RunError", "RunEvent",
    "RunRegistry", "Subscription", "TerminalEvent", "TextDeltaEvent", "Usage", "cancel_run", "decode",
    "decode_control", "delta_count", "delta_messages", "deltas_of_row", "encode", "encode_control", "event_json",
    "event_of_json", "find_call", "follow_local", "open_follower", "owner_answers", "terminal_event",
    "terminal_of_row",
]
