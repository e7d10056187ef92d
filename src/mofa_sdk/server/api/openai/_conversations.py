"""The Conversations API (OpenAI's ``/v1/conversations``) as a view of sessions: a conversation is a session
of the key's user, its items are the session's messages (ids stable, ``msg_<uuid hex>``; a reply's tool calls
are ``function_call`` items and a tool row a ``function_call_output`` item, see ``_tool_items``). Writes go
through the store as the native routes' do; a failed request leaves nothing written (one transaction)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ....entities import Message, Session
from ....errors import SessionBusyError
from ....persistence import Cursor, Store
from ...http import ApiError, Registry, StoreDep, Who
from ...runs import Principal, RunRegistry
from ._common import conversation_of, list_page
from ._shapes import conversation_obj, decode_id, encode_id
from ._tool_items import call_items, decode_item_id, input_messages, items_of_row, rows_of
from .schemas import ConversationCreate, ConversationUpdate, InputMessage, ItemsCreate

__all__ = ["router"]

router = APIRouter(tags=["openai: conversations"])
Limit = Annotated[int, Query(ge=1, le=100)]
Order = Annotated[Literal["asc", "desc"], Query()]


@contextlib.asynccontextmanager
async def _held(registry: RunRegistry, who: Principal, session_id: uuid.UUID) -> AsyncIterator[None]:
    """The conversation held for a change (refused while a response of any process is in progress)."""
    try:
        async with registry.holding(who, session_id):
            yield
    except SessionBusyError:
        raise SessionBusyError(f"conversation {encode_id('conv', session_id)} has a response in progress") from None


@router.post("/v1/conversations", summary="Create a conversation (a session), with up to 20 items")
async def create_conversation(store: StoreDep, who: Who, body: ConversationCreate | None = None) -> Any:
    body = body or ConversationCreate()
    session = Session(tenant_id=who.tenant_id, user_id=who.user_id, metadata=body.metadata or {})
    for i, m in enumerate(body.items or []):
        if isinstance(m, InputMessage):
            m.check_parts(i, "items")
    messages = rows_of(who, session.id, input_messages(body.items or []))
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
    async with _held(registry, who, session.id):
        await registry.store.delete_session(who.tenant_id, session.id)
    return {"id": encode_id("conv", session.id), "object": "conversation.deleted", "deleted": True}


@router.post("/v1/conversations/{conversation_id}/items", summary="Add items (messages) to a conversation")
async def create_items(conversation_id: str, body: ItemsCreate, registry: Registry, who: Who) -> Any:
    session = await conversation_of(registry.store, who, conversation_id)
    for i, m in enumerate(body.items):
        if isinstance(m, InputMessage):
            m.check_parts(i, "items")
    messages = rows_of(who, session.id, input_messages(body.items))
    async with _held(registry, who, session.id):
        saved = await registry.store.save_messages(messages)
    return list_page([i for m in saved for i in items_of_row(m)], False)


@router.get("/v1/conversations/{conversation_id}/items", summary="A conversation's items, by cursor")
async def list_items(conversation_id: str, store: StoreDep, who: Who, limit: Limit = 20, order: Order = "desc",
                     after: str | None = None) -> Any:
    session = await conversation_of(store, who, conversation_id)
    rows = await store.get_session_messages(who.tenant_id, session.id)
    if order == "desc":
        rows.reverse()
    items = [i for m in rows for i in (items_of_row(m) if order == "asc" else reversed(items_of_row(m)))]
    if after is not None:
        at = next((k for k, i in enumerate(items) if i["id"] == after), None)
        if at is None:
            target, _ = decode_item_id(after)
            at = next((k for k, i in enumerate(items) if decode_item_id(i["id"])[0] == target), None)
        if at is None:
            raise ApiError(404, f"item {after[:80]!r} not found in this conversation", param="after")
        items = items[at + 1:]
    return list_page(items[:limit], len(items) > limit)


async def _item(store: Store, who: Principal, session: Session, item_id: str) -> Message:
    mid, _ = decode_item_id(item_id)
    found = await store.get_message(who.tenant_id, mid)
    if found is None or found.session_id != session.id:
        raise ApiError(404, f"item {item_id[:80]!r} not found in this conversation", param="item_id")
    return found


@router.get("/v1/conversations/{conversation_id}/items/{item_id}", summary="One item")
async def get_item(conversation_id: str, item_id: str, store: StoreDep, who: Who) -> Any:
    session = await conversation_of(store, who, conversation_id)
    row = await _item(store, who, session, item_id)
    _, index = decode_item_id(item_id)
    calls = call_items(row)
    if index is not None:
        if index >= len(calls):
            raise ApiError(404, f"item {item_id[:80]!r} not found in this conversation", param="item_id")
        return calls[index]
    return items_of_row(row)[0]


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}", summary="Delete one item")
async def delete_item(conversation_id: str, item_id: str, registry: Registry, who: Who) -> Any:
    store = registry.store
    session = await conversation_of(store, who, conversation_id)
    found = await _item(store, who, session, item_id)
    if found.status == "streaming":
        raise SessionBusyError(f"item {item_id[:80]!r} is being written by a response in progress")
    async with _held(registry, who, session.id):
        await store.delete_message(who.tenant_id, found.id)
    return conversation_obj(await store.update_session(who.tenant_id, session.id))
