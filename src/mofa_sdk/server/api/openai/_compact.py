"""``POST /v1/responses/compact``: the conversation so far summarised by the model into one compaction item.

The conversation is a response's session (``previous_response_id``), a conversation (``conversation``), or
neither (a new session); ``input`` items are added to it first. The session's model (the one a turn of it
would use, or ``model``) is asked for a summary of what the window would send, and the summary is stored as a
*compaction*: a system row with ``compaction`` set, which the window then sends instead of every row before it
(as a round: ``COMPACTION_ASK`` and the summary as the model's answer).
The answer has OpenAI's ``response.compaction`` shape: the conversation's user messages, then the compaction
item, whose ``encrypted_content`` is the summary in plain text (this service does not encrypt it). The
summarising call is not a turn: it adds no user message or reply to the session, and no api-call row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from ....entities import Message, Session
from ....errors import ProviderError
from ....ids import uuid7
from ....llm import ChatMessage, ChatParams, LLMProvider, TextDelta, Usage, UsageReport
from ....persistence import SettingsRequest, Store
from ...http import ApiError, Registry, Who
from ...runs import Principal
from ._common import conversation_of, reply_row
from ._shapes import decode_id, encode_id, item_obj
from .schemas import InputMessage

__all__ = ["COMPACT_PROMPT", "CompactRequest", "router"]

router = APIRouter(tags=["openai"])

#: what the model is asked (after the conversation) when the request gives no ``instructions``
COMPACT_PROMPT = (
    "Summarise the conversation above for your own later use: the user's goals and requests, the facts, "
    "decisions and answers given, and anything still open. Write only the summary."
)


def _items(value: Any) -> Any:
    return [{"role": "user", "content": value}] if isinstance(value, str) else value


def _conversation_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


class CompactRequest(BaseModel):
    """The fields read; the SDK's other ones (prompt caching, service tier …) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    #: required, as the spec has it (a missing model is a 400 naming it); an agent row's code or a model name
    model: Annotated[StrictStr, Field(min_length=1)]
    input: Annotated[list[InputMessage], BeforeValidator(_items), Field(max_length=1000)] | None = None
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = None
    conversation: Annotated[StrictStr, BeforeValidator(_conversation_id)] | None = None


async def _session(store: Store, who: Principal, body: CompactRequest) -> Session | None:
    if body.previous_response_id and body.conversation:
        raise ApiError(400, "previous_response_id and conversation cannot both be given", "invalid_value",
                       param="previous_response_id")
    if body.conversation is not None:
        return await conversation_of(store, who, body.conversation)
    if body.previous_response_id:
        raw = body.previous_response_id
        row = await reply_row(store, who, decode_id("resp", raw, "response"))
        found = None if row is None else await store.get_session(who.tenant_id, row.session_id)
        if found is None or found.user_id != who.user_id:
            raise ApiError(404, f"response {raw[:80]!r} not found", param="previous_response_id")
        return found
    return None


def _since_compaction(rows: Sequence[Message]) -> list[Message]:
    """The rows a compaction now would summarise: from the last compaction on (it stands for those before)."""
    cut = max((i for i, r in enumerate(rows) if r.compaction), default=0)
    return list(rows[cut:])


def _sent(rows: Sequence[Message]) -> list[ChatMessage]:
    """The conversation as the model reads it: text only (tool rows as what they said)."""
    out: list[ChatMessage] = []
    for r in rows:
        if r.role == "tool":
            out.append(ChatMessage(role="user", content=f"[tool result] {r.content}"))
        elif r.role == "assistant" and r.tool_calls and not r.content:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in r.tool_calls)
            out.append(ChatMessage(role="assistant", content=f"[called] {calls}"))
        elif r.content:
            out.append(ChatMessage(role="system" if r.role == "system" else r.role, content=r.content))
    return out


def _usage(usage: Usage | None) -> dict[str, Any]:
    prompt = usage.prompt_tokens or 0 if usage is not None else 0
    completion = usage.completion_tokens or 0 if usage is not None else 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


@router.post("/v1/responses/compact", summary="Compact a conversation: its summary, stored and returned")
async def compact(body: CompactRequest, registry: Registry, who: Who) -> Any:
    store = registry.store
    session = await _session(store, who, body)
    if session is None:
        if not body.input:
            raise ApiError(400, "nothing to compact: give input, previous_response_id or conversation",
                           "missing_required_parameter", param="input")
        session = await store.create_session(Session(tenant_id=who.tenant_id, user_id=who.user_id))
    added = [Message(id=uuid7(), session_id=session.id, tenant_id=who.tenant_id, user_id=who.user_id, role=role,
                     content=text) for role, text in (m.pair for m in body.input or [])]
    rows = _since_compaction([*await store.get_session_messages(who.tenant_id, session.id), *added])
    history = _sent(rows)
    if not any(m.role != "system" for m in history):
        raise ApiError(400, "nothing to compact: the conversation has no messages since its last compaction",
                       "invalid_value", param="input")
    asked = SettingsRequest(model=body.model)
    opened = await registry.engine.open(who.tenant_id, who.user_id, session, asked)
    try:
        agent = opened.agent
        messages = [*history, ChatMessage(role="user", content=body.instructions or COMPACT_PROMPT)]
        summary, usage = await _summarise(agent.provider, messages, ChatParams(model=agent.model))
    except ProviderError as exc:
        raise ApiError(502, str(exc), exc.code) from None
    finally:
        await opened.aclose()
    if not summary.strip():
        raise ApiError(502, "the model gave an empty summary; nothing was stored", "provider_error")
    row = Message(id=uuid7(), session_id=session.id, tenant_id=who.tenant_id, user_id=who.user_id,
                  role="system", content=summary, compaction=True)
    await store.save_messages([*added, row])  # the new input and its compaction, together or not at all
    users = [item_obj(m) for m in rows if m.role == "user"]
    compaction = {"id": encode_id("cmp", row.id), "type": "compaction", "encrypted_content": summary,
                  "created_by": "mofa"}
    return {"id": encode_id("resp", row.id), "object": "response.compaction", "created_at": int(time.time()),
            "output": [*users, compaction], "usage": _usage(usage), "conversation": encode_id("conv", session.id)}


async def _summarise(
    provider: LLMProvider, messages: list[ChatMessage], params: ChatParams
) -> tuple[str, Usage | None]:
    parts: list[str] = []
    usage: Usage | None = None
    async for event in provider.stream(messages, params):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, UsageReport):
            usage = event.usage
    return "".join(parts), usage
