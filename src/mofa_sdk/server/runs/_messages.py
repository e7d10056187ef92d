"""What crosses the bus between processes, as typed messages, and their one NOTIFY codec.

On the events channel of run R: :class:`Deltas` (delta and tool-call events cut into fragments that fit a
payload; a tool event's fragments are pieces of its JSON),
:class:`Heartbeat` (the owner is alive; ``n`` deltas so far), :class:`Ended` (the terminal event) and
:class:`Resync` (something did not fit: read the row). On the control channel: :class:`Control` (watch or
cancel a run, for a tenant and user). The payloads are compact JSON (one-letter keys keep them under
PostgreSQL's 8,000 bytes); nothing outside this module reads them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._events import RunEvent, TerminalEvent, TextDeltaEvent, ToolEvent, event_json, event_of_json

__all__ = [
    "FRAGMENT_CHARS", "PAYLOAD_LIMIT", "BusMessage", "Control", "Deltas", "Ended", "Fragment", "Heartbeat",
    "Resync", "decode", "decode_control", "delta_messages", "encode", "encode_control", "event_of_fragment",
]

#: bytes of one NOTIFY payload (the server's limit is 8,000)
PAYLOAD_LIMIT = 7_500
#: characters of one text fragment: at most 6 bytes each once JSON-escaped, so it always fits
FRAGMENT_CHARS = 1_000


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of event ``n``; ``more``: another piece of the same event follows. ``kind``: "delta" (the
    pieces are its text) or a tool event's kind (the pieces are its JSON)."""

    n: int
    text: str
    more: bool = False
    kind: str = "delta"


def event_of_fragment(n: int, kind: str, text: str) -> TextDeltaEvent | ToolEvent:
    """The event whose joined fragments are ``text``; ``ValueError`` (or ``KeyError``) when malformed."""
    if kind == "delta":
        return TextDeltaEvent(n, text)
    event = event_of_json(n, kind, json.loads(text))
    if isinstance(event, TerminalEvent | TextDeltaEvent):
        raise ValueError(f"a fragment cannot carry a {kind!r} event")
    return event


@dataclass(frozen=True, slots=True)
class Deltas:
    fragments: tuple[Fragment, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    n: int


@dataclass(frozen=True, slots=True)
class Ended:
    event: TerminalEvent


@dataclass(frozen=True, slots=True)
class Resync:
    """A message was too large to send: followers read what they missed from the database."""


BusMessage = Deltas | Heartbeat | Ended | Resync


@dataclass(frozen=True, slots=True)
class Control:
    """Ask the owner of ``run_id`` to publish its events after ``after`` (``watch``) or to stop it (``cancel``);
    the owner acts only for the run's own tenant and user."""

    op: Literal["watch", "cancel"]
    run_id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    after: int = 0


def delta_messages(events: Sequence[TextDeltaEvent | ToolEvent]) -> list[Deltas]:
    """Delta and tool events as messages that each fit a payload (a long text is cut into fragments)."""
    fragments: list[Fragment] = []
    for e in events:
        if isinstance(e, TextDeltaEvent):
            text, kind = e.text, "delta"
        else:
            text, kind = _json(event_json(e)), e.kind
        pieces = [text[i : i + FRAGMENT_CHARS] for i in range(0, len(text), FRAGMENT_CHARS)] or [""]
        fragments += [Fragment(e.n, piece, i < len(pieces) - 1, kind) for i, piece in enumerate(pieces)]
    out: list[Deltas] = []
    batch: list[Fragment] = []
    size = 0
    for f in fragments:
        entry_size = len(json.dumps([f.n, f.text, 1, f.kind], ensure_ascii=False).encode()) + 1
        if batch and size + entry_size > PAYLOAD_LIMIT - 64:
            out.append(Deltas(tuple(batch)))
            batch, size = [], 0
        batch.append(f)
        size += entry_size
    if batch:
        out.append(Deltas(tuple(batch)))
    return out


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def encode(message: BusMessage, seq: int) -> str:
    """The JSON of an events-channel message. ``seq`` makes every payload unique: PostgreSQL delivers
    identical payloads of one transaction once, and fragments of a run of one character would collapse."""
    obj: dict[str, Any]
    if isinstance(message, Deltas):
        obj = {"k": "ev", "e": [[f.n, f.text, int(f.more)] if f.kind == "delta" else [f.n, f.text, int(f.more), f.kind]
                                for f in message.fragments]}
    elif isinstance(message, Heartbeat):
        obj = {"k": "hb", "n": message.n}
    elif isinstance(message, Ended):
        obj = {"k": "end", "n": message.event.n, "kind": message.event.kind, "data": event_json(message.event)}
    else:
        obj = {"k": "big"}
    return _json({**obj, "s": seq})


def decode(payload: str) -> BusMessage:
    """The message of :func:`encode`'s JSON; ``ValueError`` (or ``KeyError``/``TypeError``) when malformed."""
    obj = json.loads(payload)
    kind = obj["k"]
    if kind == "ev":
        return Deltas(tuple(Fragment(int(e[0]), str(e[1]), bool(e[2]), str(e[3]) if len(e) > 3 else "delta")
                            for e in obj["e"]))
    if kind == "hb":
        return Heartbeat(int(obj["n"]))
    if kind == "end":
        event: RunEvent = event_of_json(int(obj["n"]), str(obj["kind"]), obj["data"])
        if not isinstance(event, TerminalEvent):
            raise ValueError("an end message must carry a terminal event")
        return Ended(event)
    if kind == "big":
        return Resync()
    raise ValueError(f"unknown bus message {kind!r}")


def encode_control(message: Control, seq: int) -> str:
    return _json({"op": message.op, "run": str(message.run_id), "after": message.after,
                  "tenant": str(message.tenant_id), "user": str(message.user_id), "s": seq})


def decode_control(payload: str) -> Control:
    obj = json.loads(payload)
    op = obj["op"]
    if op not in ("watch", "cancel"):
        raise ValueError(f"unknown control operation {op!r}")
    after = obj.get("after")
    return Control(op, uuid.UUID(str(obj["run"])), uuid.UUID(str(obj["tenant"])), uuid.UUID(str(obj["user"])),
                   after if isinstance(after, int) and after >= 0 else 0)
