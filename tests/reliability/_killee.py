"""A process to be killed: streams turns on a few sessions of its own until SIGKILL arrives.

``python -m tests.reliability._killee <database url> <slot> <sessions>``: prints ``ready`` once its sessions
are open, then runs turns forever (short scripted replies, checkpoints every 20 ms).
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from mofa_sdk.llm import LLMAgentBuilder, ScriptedProvider
from mofa_sdk.persistence import PersistencePlugin, connect_store

TENANT = uuid.UUID("019bda9f-0000-7000-8000-00000000c111")
USER = uuid.UUID("019bda9f-0000-7000-8000-00000000c222")
AGENT = uuid.UUID("019bda9f-0000-7000-8000-00000000c333")
REPLY = " ".join(f"w{i}" for i in range(40))


def session_ids(slot: int, n: int) -> list[uuid.UUID]:
    return [uuid.uuid5(TENANT, f"slot-{slot}-session-{i}") for i in range(n)]


async def main(url: str, slot: int, n: int) -> None:
    store = await connect_store(url)
    plugin = PersistencePlugin.from_store("p", store, USER, TENANT, AGENT, checkpoint_interval=0.02)
    agent = await (
        LLMAgentBuilder()
        .with_provider(ScriptedProvider([REPLY], delta_delay=0.005))
        .with_sliding_window(2)
        .with_persistence_plugin(plugin)
        .build_async()
    )
    sessions = session_ids(slot, n)
    for sid in sessions:
        await agent.switch_session(sid)
    print("ready", flush=True)

    async def talk(sid: uuid.UUID) -> None:
        turn = 0
        while True:
            turn += 1
            await agent.chat(f"question {turn}", session_id=sid)

    await asyncio.gather(*(talk(s) for s in sessions))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
