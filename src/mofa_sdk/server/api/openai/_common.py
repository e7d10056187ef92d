"""What the Conversations and Responses views share: list pages, the conversation of an id, the reply row of
a response id, and rows from input items."""

from __future__ import annotations

import uuid
from typing import Any

from ....entities import Message, Session
from ....persistence import Store, owned_session
from ...http import ApiError
from ...runs import Principal
from ._shapes import decode_id
from .schemas import Role

__all__ = ["conversation_of", "list_page", "messages_of", "reply_row"]


async def conversation_of(store: Store, who: Principal, raw_id: str) -> Session:
    sid = decode_id("conv", raw_id, "conversation")
    found = await owned_session(store, who.tenant_id, who.user_id, sid)
    if found is None:
        raise ApiError(404, f"conversation {raw_id[:80]!r} not found", param="conversation_id")
    return found


def list_page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


async def reply_row(store: Store, who: Principal, rid: uuid.UUID) -> Message | None:
    """The reply row of a response (its run's id), if it is this user's."""
    row = await store.get_message(who.tenant_id, rid)
    if row is None or row.role != "assistant" or row.user_id != who.user_id:
        return None
    return row


def messages_of(who: Principal, session_id: uuid.UUID, pairs: list[tuple[Role, str]]) -> list[Message]:
    """Rows of ``session_id`` for input items, as the key's user."""
    return [Message(session_id=session_id, tenant_id=who.tenant_id, user_id=who.user_id, role=role, content=text)
            for role, text in pairs]
