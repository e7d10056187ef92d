"""Database-Driven Agent Configuration: the agent and its provider are rows, looked up by tenant and code.

Create the rows once, with the CLI (the key is read from the environment, never echoed):

    export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/mofa"   # or sqlite:///chat.db
    mofa providers add local-llm --type compatible --api-base http://127.0.0.1:8080/v1 --tenant $TENANT_ID
    mofa agents add chat-assistant --provider local-llm --model smollm2 --window 4 \
        --system "You are a helpful assistant." --tenant $TENANT_ID

or in SQL (PostgreSQL; after `psql -f scripts/sql/migrations/postgres_init.sql`):

    INSERT INTO entity_provider (id, tenant_id, provider_name, provider_type, api_base)
      VALUES ('019bda9f-0000-7000-8000-000000000001', :tenant, 'local-llm', 'compatible', 'http://127.0.0.1:8080/v1');
    INSERT INTO entity_agent (id, tenant_id, agent_code, agent_name, model_name, provider_id, system_prompt,
                              context_limit)
      VALUES ('019bda9f-0000-7000-8000-000000000002', :tenant, 'chat-assistant', 'Chat Assistant', 'smollm2',
              '019bda9f-0000-7000-8000-000000000001', 'You are a helpful assistant.', 4);

Then:

    export AGENT_CODE="chat-assistant"
    export USER_ID="550e8400-e29b-41d4-a716-446655440003"
    export TENANT_ID="..."            # the tenant of the rows (default: the nil UUID)
    export SESSION_ID="..."           # optional: resume this session
    python examples/agent_from_database_streaming.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from _common import user_lines

from mofa_sdk.errors import MofaError
from mofa_sdk.llm import LLMAgentBuilder
from mofa_sdk.persistence import PersistencePlugin, PostgresStore, Store, connect_store

NIL = str(uuid.UUID(int=0))


async def main() -> int:
    database_url = os.environ.get("DATABASE_URL", "")
    tenant_id = os.environ.get("TENANT_ID", NIL)
    user_id = os.environ.get("USER_ID", NIL)
    session_id = os.environ.get("SESSION_ID") or None
    agent_code = os.environ.get("AGENT_CODE", "chat-assistant")

    if database_url.startswith("postgres"):
        store: Store = await PostgresStore.connect(database_url)
    else:
        store = await connect_store(database_url or None)

    # Load agent config from database
    config = await store.get_agent_by_code_and_tenant_with_provider(tenant_id, agent_code)
    if config is None:
        print(f"Agent not found: {agent_code!r} in tenant {tenant_id}", file=sys.stderr)
        await store.close()
        return 1

    # Create persistence plugin
    persistence = PersistencePlugin.from_store(
        "persistence-plugin", store, user_id, tenant_id, config.agent.id, session_id
    )

    # Build agent from database config
    agent = await LLMAgentBuilder.from_agent_config(config).with_persistence_plugin(persistence).build_async()
    print(f"session {agent.session_id}", file=sys.stderr)
    try:
        # Stream with database-backed session
        async for user_input in user_lines():
            try:
                async for text in agent.chat_stream(user_input):
                    print(text, end="", flush=True)
            except MofaError as e:
                print(f"\nError: {e}", file=sys.stderr)
            print()
    finally:
        await agent.aclose()
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
