"""Threading stateless clients into one conversation: which session a request that resends its whole history
continues, and which of its messages are new to it.

A Chat Completions client (or a Responses client sending an ``input`` list) sends every earlier message again
on each turn. The request's history chain (``persistence._chain``) names it: the session of the same tenant
and user whose last stored message has the link of the longest prefix of the request continues, and only the
messages after that prefix are saved. No match: a new session holding the whole request. An edit of an earlier
message changes every link after it, so the edited history matches nothing longer than the part before the
edit: it becomes a new session (a branch), and the original session is left as it was. System and developer
messages are not links (see ``_chain``): a changed system prompt still continues the conversation.

With ``X-Mofa-Session-Id`` the same rule decides what is new within that session; a session that does not
exist yet is created holding the whole request, and one whose history the request does not continue gets the
request's messages after its last assistant message (as without threading).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ....llm import ChatMessage
from ....persistence import Store, ThreadMatch, chain_of, in_chain
from ...runs import Principal

__all__ = ["Threaded", "decide", "thread_request"]


@dataclass(frozen=True, slots=True)
class Threaded:
    """Where a request goes: ``session_id`` (None: a new session) and the messages the session does not store
    yet, in order, ending with the user message the turn answers (or the tool results it continues with)."""

    session_id: uuid.UUID | None
    new: tuple[ChatMessage, ...]


def _after_chained(messages: Sequence[ChatMessage], count: int) -> list[ChatMessage]:
    """The messages after the first ``count`` chained ones (system ones before them stay behind)."""
    if count == 0:
        return list(messages)
    seen = 0
    for i, m in enumerate(messages):
        if in_chain(m.role):
            seen += 1
            if seen == count:
                return list(messages[i + 1 :])
    return []


def _tail_after_assistant(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return list(messages[last + 1 :])


def decide(
    messages: Sequence[ChatMessage], match: ThreadMatch | None, *, session_id: uuid.UUID | None = None,
    session_exists: bool = False,
) -> Threaded | None:
    """Pure: the request's ``messages``, the store's ``match`` for their chain, the session the client named
    (and whether it exists) → where the turn goes and what is new. None when the request does not end with a
    user message or tool results after what is stored (the caller keeps its own rule)."""
    if match is not None:
        new = _after_chained(messages, match.matched)
        target: uuid.UUID | None = match.session_id
    elif session_id is not None and session_exists:
        new, target = _tail_after_assistant(messages), session_id
    else:
        new, target = list(messages), session_id
    if not new or new[-1].role not in ("user", "tool"):
        return None
    return Threaded(target, tuple(new))


async def thread_request(
    store: Store, who: Principal, messages: Sequence[ChatMessage], session_id: uuid.UUID | None
) -> Threaded | None:
    """Look the request's history up for ``who`` (only in ``session_id`` when the client named one) and
    :func:`decide`. The last message is never matched: a turn always adds the user message it answers."""
    links = chain_of(messages)[:-1]
    match = await store.find_thread(who.tenant_id, who.user_id, links, session_id=session_id) if links else None
    exists = False
    if match is None and session_id is not None:
        exists = await store.get_session(who.tenant_id, session_id) is not None
    return decide(messages, match, session_id=session_id, session_exists=exists)
