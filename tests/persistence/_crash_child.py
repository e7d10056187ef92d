"""Child process for the kill -9 test: streams a slow scripted reply with checkpoints, printing each delta."""

from __future__ import annotations

import asyncio
import sys

from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, connect_store


async def main(url: str, tenant: str, user: str, session: str, interval: float) -> None:
    store = await connect_store(url)
    plugin = PersistencePlugin.from_store("p", store, user, tenant, user, session, checkpoint_interval=interval)
    provider = ScriptedProvider([[f"t{i} " for i in range(10_000)]], delta_delay=0.005)
    agent = await LLMAgentBuilder().with_provider(provider).with_persistence_plugin(plugin).build_async()
    async for text in agent.chat_stream("tell me a long story"):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
