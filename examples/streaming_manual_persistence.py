"""Manual Persistence: the caller decides what is saved, with custom metadata, conditionally, and in
its own transaction.

    export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/mofa"   # or sqlite:///chat.db
    export USER_ID=... TENANT_ID=... AGENT_ID=...   # UUIDs (optional; defaults below)
    python examples/streaming_manual_persistence.py

Each reply is saved only if it passes a check (non-empty and complete); otherwise only a note is kept
on the user message's turn. SESSION_ID continues an existing session.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from _common import user_lines

from mofa_sdk.errors import MofaError
from mofa_sdk.llm import LLMAgentBuilder
from mofa_sdk.persistence import PersistenceContext, PostgresStore, Store, connect_store

NIL = str(uuid.UUID(int=0))


async def main() -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    user_id = os.environ.get("USER_ID", NIL)
    tenant_id = os.environ.get("TENANT_ID", NIL)
    agent_id = os.environ.get("AGENT_ID", str(uuid.uuid5(uuid.NAMESPACE_URL, "mofa:manual-example")))

    # Connect to database: one pool per URL per process (the seed's PostgresStore::shared)
    if database_url.startswith("postgres"):
        store: Store = await PostgresStore.shared(database_url)
    else:
        store = await connect_store(database_url or None)

    # Create persistence context (new or existing session)
    if os.environ.get("SESSION_ID"):
        ctx = await PersistenceContext.from_session(
            store, user_id, tenant_id, agent_id, os.environ["SESSION_ID"]
        )
    else:
        ctx = await PersistenceContext.new(store, user_id, tenant_id, agent_id)
    print(f"session {ctx.session_id}", file=sys.stderr)

    agent = LLMAgentBuilder.from_env().with_system_prompt("You are a helpful assistant.").build()
    try:
        async for user_input in user_lines():
            # Manually save the user message, with custom metadata
            await ctx.save_user_message(user_input, metadata={"channel": "cli", "chars": len(user_input)})

            # Stream the response
            stream = agent.chat_stream(user_input)
            full_response = ""
            try:
                async for text in stream:
                    print(text, end="", flush=True)
                    full_response += text
            except MofaError as e:
                print(f"\nError: {e}", file=sys.stderr)
            print()

            # Conditional persistence: keep the reply only if it passes a quality check, and record the call
            # in the same transaction so both land or neither does.
            async with store.transaction() as tx:
                if stream.status == "complete" and full_response.strip():
                    await ctx.save_assistant_message(
                        full_response, metadata={"model": agent.model, "checked": True}, tx=tx
                    )
                await ctx.save_api_call(model_name=agent.model, stream=stream, tx=tx)
    finally:
        await agent.aclose()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
