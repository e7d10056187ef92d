"""Opening a session for one tenant's user: the owner check every entry point (plugin, manual context,
CLI) shares, so that none of them can load or write into another user's conversation."""

from __future__ import annotations

import uuid

from ..entities import Session
from ..errors import TenantMismatchError
from ..ids import uuid7
from ._protocols import SessionOpener, SessionReader

__all__ = ["find_session", "open_session", "owned_session"]


async def find_session(
    store: SessionReader, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID
) -> Session | None:
    """The user's session, or None when the tenant has none with that id. Another user's session raises
    TenantMismatchError (stores scope every read by tenant, so another tenant's reads as None)."""
    found = await store.get_session(tenant_id, session_id)
    if found is not None and found.user_id != user_id:
        raise TenantMismatchError(f"session {session_id} belongs to another user; nothing was read or written")
    return found


async def owned_session(
    store: SessionReader, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID
) -> Session | None:
    """The user's session, or None: another user's reads as one that does not exist (what the CLI and the
    service answer, so that a guessed id tells nothing)."""
    try:
        return await find_session(store, tenant_id, user_id, session_id)
    except TenantMismatchError:
        return None


async def open_session(
    store: SessionOpener,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    session_id: uuid.UUID | None,
) -> tuple[Session, bool]:
    """Get or create the session (None: a new one); returns it and whether it was created now. A session
    of another tenant or user raises TenantMismatchError, with nothing written."""
    if session_id is not None:
        found = await find_session(store, tenant_id, user_id, session_id)
        if found is not None:
            return found, False
    # create_session refuses (TenantMismatchError, nothing written) an id another tenant holds
    sid = uuid7() if session_id is None else session_id
    created = await store.create_session(Session(id=sid, tenant_id=tenant_id, user_id=user_id, agent_id=agent_id))
    return created, True
