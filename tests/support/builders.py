"""Entities for store tests: valid by default, any field overridden by keyword."""

from __future__ import annotations

import uuid
from typing import Any

from mofa_sdk.entities import Agent, LLMApiCall, Message, Provider, Session
from mofa_sdk.persistence import Store

__all__ = ["agent", "call", "msg", "new_session", "provider", "same"]


async def new_session(store: Store, tenant: uuid.UUID, user: uuid.UUID, **kw: Any) -> Session:
    return await store.create_session(Session(tenant_id=tenant, user_id=user, **kw))


def msg(s: Session, content: str = "hi", **kw: Any) -> Message:
    kw.setdefault("role", "user")
    return Message(session_id=s.id, tenant_id=s.tenant_id, user_id=s.user_id, content=content, **kw)


def call(s: Session, **kw: Any) -> LLMApiCall:
    fields: dict[str, Any] = {"tenant_id": s.tenant_id, "session_id": s.id, "user_id": s.user_id}
    fields.update(model_name="gpt-test", status="success")
    return LLMApiCall(**{**fields, **kw})


def provider(tenant: uuid.UUID, name: str = "openai", **kw: Any) -> Provider:
    kw.setdefault("provider_type", "openai")
    return Provider(tenant_id=tenant, provider_name=name, **kw)


def agent(tenant: uuid.UUID, provider_id: uuid.UUID, code: str = "chat", **kw: Any) -> Agent:
    kw.setdefault("agent_name", f"Agent {code}")
    kw.setdefault("model_name", "gpt-test")
    return Agent(tenant_id=tenant, provider_id=provider_id, agent_code=code, **kw)


def same(a: Any, b: Any, *exclude: str) -> None:
    """Equal field by field (times compared as instants)."""
    assert a.model_dump(exclude=set(exclude)) == b.model_dump(exclude=set(exclude))
