"""The Conversations API (OpenAI's ``/v1/conversations``) as a view of sessions: a conversation is a session
of the key's user, its items are the session's messages (ids stable, ``msg_<uuid hex>``). Writes go through
the store as the native routes' do; a failed request leaves nothing written (one transaction)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from ..entities import Message, Session
from ..errors import SessionBusyError
from ..persistence._sessions import owned_session
from ._auth import principal
from ._errors import ApiError
from ._responses_shapes import conversation_obj, decode_id, encode_id, input_messages, item_obj
from ._routes_runs import registry_of
from ._runs import Principal, RunRegistry

__all__ = ["conversation_of", "json_body", "list_page", "router", "string_metadata"]

router = APIRouter(tags=["openai: conversations"])
Who = Annotated[Principal, Depends(principal)]
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Annotated[Literal["asc", "desc"], Query()]
#: OpenAI's limits: 20 initial items per create, 16 metadata keys of at most 64 / 512 characters
MAX_ITEMS = 20


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


async def conversation_of(registry: RunRegistry, who: Principal, raw_id: str) -> Session:
    sid = decode_id("conv", raw_id, "conversation")
    found = await owned_session(registry.store, who.tenant_id, who.user_id, sid)
    if found is None:
        raise ApiError(404, f"conversation {raw_id[:80]!r} not found", param="conversation_id")
    return found


def _busy(registry: RunRegistry, session_id: uuid.UUID) -> None:
    if any(r.session_id == session_id and r.terminal is None for r in registry.runs.values()):
        raise SessionBusyError(f"conversation {encode_id('conv', session_id)} has a response in progress")


def _messages(who: Principal, session_id: uuid.UUID, items: Any, param: str) -> list[Message]:
    if items is None:
        return []
    pairs = input_messages(items, param) if items != [] else []
    if len(pairs) > MAX_ITEMS:
        raise ApiError(400, f"{param}: at most {MAX_ITEMS} items at once, got {len(pairs)}", "invalid_value",
                       param=param)
    return [Message(session_id=session_id, tenant_id=who.tenant_id, user_id=who.user_id, role=role,  # type: ignore[arg-type]
                    content=text) for role, text in pairs]


def list_page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


@router.post("/v1/conversations", summary="Create a conversation (a session), with up to 20 items")
async def create_conversation(request: Request, who: Who) -> Any:
    body = await json_body(request)
    unknown = set(body) - {"metadata", "items"}
    if unknown:
        raise ApiError(400, f"unknown parameter {sorted(unknown)[0]!r}", "unknown_parameter",
                       param=sorted(unknown)[0])
    store = registry_of(request).store
    session = Session(tenant_id=who.tenant_id, user_id=who.user_id, metadata=string_metadata(body.get("metadata")))
    messages = _messages(who, session.id, body.get("items"), "items")
    async with store.transaction() as tx:
        created = await store.create_session(session, tx=tx)
        if messages:
            await store.save_messages(messages, tx=tx)
    return conversation_obj(created)


@router.get("/v1/conversations", summary="This user's conversations, most recently active first (mofa only)")
async def list_conversations(request: Request, who: Who, limit: Limit = 20, after: str | None = None) -> Any:
    store = registry_of(request).store
    offset = 0
    if after is not None:  # a cursor: the page after that conversation (found by scanning the user's list)
        target = decode_id("conv", after, "conversation")
        while True:
            page = await store.get_user_sessions(who.tenant_id, who.user_id, offset=offset, limit=100)
            hit = next((i for i, s in enumerate(page) if s.id == target), None)
            if hit is not None:
                offset += hit + 1
                break
            if len(page) < 100:
                raise ApiError(404, f"conversation {after[:80]!r} not found", param="after")
            offset += 100
    found = await store.get_user_sessions(who.tenant_id, who.user_id, offset=offset, limit=limit + 1)
    return list_page([conversation_obj(s) for s in found[:limit]], len(found) > limit)


@router.get("/v1/conversations/{conversation_id}", summary="A conversation")
async def get_conversation(conversation_id: str, request: Request, who: Who) -> Any:
    return conversation_obj(await conversation_of(registry_of(request), who, conversation_id))


@router.post("/v1/conversations/{conversation_id}", summary="Replace a conversation's metadata")
async def update_conversation(conversation_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    body = await json_body(request)
    if "metadata" not in body or set(body) - {"metadata"}:
        raise ApiError(400, "the body must be {\"metadata\": {...}}", "invalid_value", param="metadata")
    meta = string_metadata(body["metadata"])
    session = await conversation_of(registry, who, conversation_id)
    return conversation_obj(await registry.store.update_session(who.tenant_id, session.id, metadata=meta))


@router.delete("/v1/conversations/{conversation_id}", summary="Delete a conversation, its items and api calls")
async def delete_conversation(conversation_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    session = await conversation_of(registry, who, conversation_id)
    _busy(registry, session.id)
    await registry.store.delete_session(who.tenant_id, session.id)
    return {"id": encode_id("conv", session.id), "object": "conversation.deleted", "deleted": True}


@router.post("/v1/conversations/{conversation_id}/items", summary="Add items (messages) to a conversation")
async def create_items(conversation_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    body = await json_body(request)
    if set(body) - {"items"} or not isinstance(body.get("items"), list) or not body["items"]:
        raise ApiError(400, "the body must be {\"items\": [message items]}", "invalid_value", param="items")
    session = await conversation_of(registry, who, conversation_id)
    messages = _messages(who, session.id, body["items"], "items")
    _busy(registry, session.id)
    saved = await registry.store.save_messages(messages)
    return list_page([item_obj(m) for m in saved], False)


@router.get("/v1/conversations/{conversation_id}/items", summary="A conversation's items, by cursor")
async def list_items(conversation_id: str, request: Request, who: Who, limit: Limit = 20, order: Order = "desc",
                     after: str | None = None) -> Any:
    registry = registry_of(request)
    session = await conversation_of(registry, who, conversation_id)
    rows = await registry.store.get_session_messages(who.tenant_id, session.id)
    if order == "desc":
        rows.reverse()
    if after is not None:
        target = decode_id("msg", after, "item")
        at = next((i for i, m in enumerate(rows) if m.id == target), None)
        if at is None:
            raise ApiError(404, f"item {after[:80]!r} not found in this conversation", param="after")
        rows = rows[at + 1:]
    return list_page([item_obj(m) for m in rows[:limit]], len(rows) > limit)


async def _item(registry: RunRegistry, who: Principal, session: Session, item_id: str) -> Message:
    mid = decode_id("msg", item_id, "item")
    found = await registry.store.get_message(who.tenant_id, mid)
    if found is None or found.session_id != session.id:
        raise ApiError(404, f"item {item_id[:80]!r} not found in this conversation", param="item_id")
    return found


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", summary="One item")
async def get_item(conversation_id: str, item_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    session = await conversation_of(registry, who, conversation_id)
    return item_obj(await _item(registry, who, session, item_id))


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}", summary="Delete one item")
async def delete_item(conversation_id: str, item_id: str, request: Request, who: Who) -> Any:
    registry = registry_of(request)
    session = await conversation_of(registry, who, conversation_id)
    found = await _item(registry, who, session, item_id)
    if found.status == "streaming":
        raise SessionBusyError(f"item {item_id[:80]!r} is being written by a response in progress")
    await registry.store.delete_message(who.tenant_id, found.id)
    return conversation_obj(await registry.store.update_session(who.tenant_id, session.id))
