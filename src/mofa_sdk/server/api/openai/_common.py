"""What the Conversations and Responses views share: the JSON body, metadata, list pages, the conversation
of an id, the reply row of a response id."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import Request

from ....entities import Message, Session
from ....persistence import Store
from ....persistence._sessions import owned_session
from ...http import ApiError
from ...runs import Principal
from ._shapes import decode_id

__all__ = ["conversation_of", "json_body", "list_page", "reply_row", "string_metadata"]


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object; anything else is a 400 (OpenAI answers 400, not FastAPI's 422)."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_type")
    return body


def string_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 16 or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in raw.items()
    ):
        raise ApiError(400, "metadata must be an object of at most 16 string keys (<= 64 chars) and string "
                       "values (<= 512 chars)", "invalid_value", param="metadata")
    return dict(raw)


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
