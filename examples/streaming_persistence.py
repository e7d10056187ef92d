"""Streaming Persistence (Automatic): every message, reply and LLM call is saved without further code.

    export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/mofa"   # or sqlite:///chat.db
    export OPENAI_API_KEY="sk-..."          # or OPENAI_BASE_URL of any OpenAI-compatible server;
                                            # with neither, the local SmolLM2 model (extra `local`)
    python examples/streaming_persistence.py

Type lines; `quit` ends. Run it again: the session (SESSION_ID, else the seed's id) resumes, and the
model sees the last 2 rounds.
"""

from __future__ import annotations

import asyncio
import os
import sys

from _common import user_lines

from mofa_sdk.errors import MofaError
from mofa_sdk.persistence import quick_agent, quick_agent_with_postgres

SESSION_ID = os.environ.get("SESSION_ID", "019bda9f-9ffd-7a80-a9e5-88b05e81a7d4")


async def main() -> None:
    prompt = "You are a professional AI assistant."
    # The seed's helper is PostgreSQL's; any other DATABASE_URL (or none: an SQLite file) goes through quick_agent.
    url = os.environ.get("DATABASE_URL", "")
    builder = quick_agent_with_postgres(prompt) if url.startswith("postgres") else quick_agent(prompt)
    agent = await (
        builder.with_session_id(SESSION_ID)
        .with_name("Streaming Persistence Agent")
        .with_sliding_window(2)  # keep the last 2 rounds
        .build_async()
    )
    print(f"session {agent.session_id}", file=sys.stderr)
    try:
        async for user_input in user_lines():
            try:
                async for text in agent.chat_stream(user_input):
                    print(text, end="", flush=True)
            except MofaError as e:
                print(f"\nError: {e}", file=sys.stderr)
            print()
    finally:
        await agent.aclose()


if __name__ == "__main__":
    asyncio.run(main())
