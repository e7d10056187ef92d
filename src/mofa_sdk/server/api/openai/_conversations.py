"""The Conversations API (OpenAI's ``/v1/conversations``) as a view of sessions: a conversation is a session
of the key's user, its items are the session's messages (ids stable, ``msg_<uuid hex>``). Writes go through
the store as the native routes' do; a failed request leaves nothing written (one transaction)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ....entities import Message, Session
from ....errors import SessionBusyError
from ....persistence import Cursor, Store
from ...http import ApiError, Registry, StoreDep, Who
from ...runs import Principal, RunRegistry
from ._common import conversation_of, list_page, messages_of
from ._shapes import conversation_obj, decode_id, encode_id, item_obj
from .schemas import ConversationCreate, ConversationUpdate, ItemsCreate

__all__ = ["router"]

router = APIRouter(tags=["openai: conversations"])
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Annotated[Literal["asc", "desc"], Query()]


def _busy(registry: RunRegistry, session_id: uuid.UUID) -> None:
    if any(r.session_id == session_id and r.terminal is None for r in registry.runs.values()):
        raise SessionBusyError(f"conversation {encode_id('conv', session_id)} has a response in progress")


@router.post("/v1/conversations", summary="Create a conversation (a session), with up to 20 items")
async def create_conversation(store: StoreDep, who: Who, body: ConversationCreate | None = None) -> Any:
    body = body or ConversationCreate()
    session = Session(tenant_id=who.tenant_id, user_id=who.user_id, metadata=body.metadata or {})
    messages = messages_of(who, session.id, [m.pair for m in body.items or []])
    async with store.transaction() as tx:
        created = await store.create_session(session, tx=tx)
        if messages:
            await store.save_messages(messages, tx=tx)
    return conversation_obj(created)


@router.get("/v1/conversations", summary="This user's conversations, most recently active first (mofa only)")
async def list_conversations(store: StoreDep, who: Who, limit: Limit = 20, after: str | None = None) -> Any:
    cursor = None
    if after is not None:  # the page after that conversation: a keyset page from where it stands in the list
        target = decode_id("conv", after, "conversation")
        found_one = await store.get_session(who.tenant_id, target)
        if found_one is None or found_one.user_id != who.user_id:
            raise ApiError(404, f"conversation {after[:80]!r} not found", param="after")
        cursor = Cursor(found_one.update_time, found_one.id)
    page = await store.list_user_sessions(who.tenant_id, who.user_id, after=cursor, limit=limit)
    return list_page([conversation_obj(s) for s in page.items], page.next is not None)


@router.get("/v1/conversations/{conversation_id}", summary="A conversation")
async def get_conversation(conversation_id: str, store: StoreDep, who: Who) -> Any:
    return conversation_obj(await conversation_of(store, who, conversation_id))


@router.post("/v1/conversations/{conversation_id}", summary="Replace a conversation's metadata")
async def update_conversation(conversation_id: str, body: ConversationUpdate, store: StoreDep, who: Who) -> Any:
    session = await conversation_of(store, who, conversation_id)
    return conversation_obj(await store.update_session(who.tenant_id, session.id, metadata=body.metadata))


@router.delete("/v1/conversations/{conversation_id}", summary="Delete a conversation, its items and api calls")
async def delete_conversation(conversation_id: str, registry: Registry, who: Who) -> Any:
    session = await conversation_of(registry.store, who, conversation_id)
    _busy(registry, session.id)
    await registry.store.delete_session(who.tenant_id, session.id)
    return {"id": encode_id("conv", session.id), "object": "conversation.deleted", "deleted": True}


@router.post("/v1/conversations/{conversation_id}/items", summary="Add items (messages) to a conversation")
async def create_items(conversation_id: str, body: ItemsCreate, registry: Registry, who: Who) -> Any:
    session = await conversation_of(registry.store, who, conversation_id)
    messages = messages_of(who, session.id, [m.pair for m in body.items])
    _busy(registry, session.id)
    saved = await registry.store.save_messages(messages)
    return list_page([item_obj(m) for m in saved], False)


@router.get("/v1/conversations/{conversation_id}/items", summary="A conversation's items, by cursor")
async def list_items(conversation_id: str, store: StoreDep, who: Who, limit: Limit = 20, order: Order = "desc",
                     after: str | None = None) -> Any:
    session = await conversation_of(store, who, conversation_id)
    rows = await store.get_session_messages(who.tenant_id, session.id)
    if order == "desc":
        rows.reverse()
    if after is not None:
        target = decode_id("msg", after, "item")
        at = next((i for i, m in enumerate(rows) if m.id == target), None)
        if at is None:
            raise ApiError(404, f"item {after[:80]!r} not found in this conversation", param="after")
        rows = rows[at + 1:]
    return list_page([item_obj(m) for m in rows[:limit]], len(rows) > limit)


async def _item(store: Store, who: Principal, session: Session, item_id: str) -> Message:
    mid = decode_id("msg", item_id, "item")
    found = await store.get_message(who.tenant_id, mid)
    if found is None or found.session_id != session.id:
        raise ApiError(404, f"item {item_id[:80]!r} not found in this conversation", param="item_id")
    return found


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", summary="One item")
async def get_item(conversation_id: str, item_id: str, store: StoreDep, who: Who) -> Any:
    session = await conversation_of(store, who, conversation_id)
    return item_obj(await _item(store, who, session, item_id))


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}", summary="Delete one item")
async def delete_item(conversation_id: str, item_id: str, store: StoreDep, who: Who) -> Any:
    session = await conversation_of(store, who, conversation_id)
    found = await _item(store, who, session, item_id)
    if found.status == "streaming":
        raise SessionBusyError(f"item {item_id[:80]!r} is being written by a response in progress")
    await store.delete_message(who.tenant_id, found.id)
    return conversation_obj(await store.update_session(who.tenant_id, session.id))
