"""The history chain: one hash per stored message that names the whole conversation up to it.

A message's link is ``sha256(previous link, its canonical form)``, where the canonical form is its role, its
text, and, when it has them, its tool calls (id, name, arguments as written), the call it answers and its
input parts. Two sessions whose messages are equal, in order, have equal links; an edit anywhere changes every
link after it. ``mofa serve`` threads a client that resends its whole history (Chat Completions, Responses
``input`` lists) into the session whose last link is the link of the request's history.

System and developer messages are not links of the chain: they are instructions for a request, which clients
rewrite freely (a date in the prompt), and an agent's own system prompt is never stored. A stored system row
carries the link of the message before it. Pure code: the store writes the links (see ``find_thread``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..entities import MessagePart, MessageToolCall
from ..llm import ChatMessage
from ._chat_rows import stored_parts, stored_tool_calls

__all__ = ["GENESIS", "ThreadMatch", "chain_of", "in_chain", "link", "row_link"]

#: the link before a session's first message
GENESIS = ""

#: roles that are instructions, not conversation: they carry the previous link
_OUTSIDE = frozenset({"system", "developer"})


class _Linkable(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def tool_call_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ThreadMatch:
    """The session a request's history continues: ``matched`` is how many of the request's chained
    messages (system ones not counted) it already stores."""

    session_id: uuid.UUID
    matched: int


def in_chain(role: str) -> bool:
    """Whether a message of ``role`` is a link of the chain (system and developer messages are not)."""
    return role not in _OUTSIDE


def link(
    previous: str,
    role: str,
    content: str,
    tool_calls: Sequence[MessageToolCall] = (),
    tool_call_id: str | None = None,
    parts: Sequence[MessagePart] = (),
) -> str:
    """The link of a message after ``previous``: 64 hex digits. Fields a message does not have are left out
    of its form, so a text message's link never depends on columns added later."""
    form: list[object] = [previous, role, content]
    if tool_calls or tool_call_id is not None:
        form.append([[c.id, c.name, c.arguments] for c in tool_calls])
        form.append(tool_call_id)
    if parts:
        # a file part's name as well (after the fields every part has, so text and image links are unchanged)
        form.append([[p.type, p.text, p.url, p.detail, *([p.filename] if p.type == "file" else [])] for p in parts])
    canonical = json.dumps(form, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a stored text is valid Unicode, but a hash must never be the thing that fails
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def row_link(previous: str, row: _Linkable, tool_calls: Sequence[MessageToolCall] = (),
             parts: Sequence[MessagePart] = ()) -> str:
    """The link of a stored row (or any message with its fields) after ``previous``."""
    if not in_chain(row.role):
        return previous
    return link(previous, row.role, row.content, tool_calls, row.tool_call_id, parts)


def chain_of(messages: Sequence[ChatMessage]) -> list[str]:
    """The link after each chained message of ``messages`` (system ones skipped), in order: element ``k-1``
    is the link of the first ``k`` chained messages, what a session storing exactly them ends with."""
    out: list[str] = []
    previous = GENESIS
    for m in messages:
        if not in_chain(m.role):
            continue
        previous = row_link(previous, m, stored_tool_calls(m.tool_calls), stored_parts(m.parts))
        out.append(previous)
    return out
