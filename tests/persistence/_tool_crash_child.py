"""Child process for the tool kill -9 tests: a turn whose tools count their runs in a file; it prints markers
and then hangs at the point the test kills it (``saved``: after the tool-call message is saved; ``running``:
while a tool runs; ``one_result``: after the first of two results is saved)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mofa_sdk.llm import ChatMessage, EventHandler, LLMAgentBuilder, ScriptedProvider, ToolCall, ToolStep, Turn
from mofa_sdk.persistence import PersistencePlugin, connect_store


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(url: str, tenant: str, user: str, session: str, scenario: str, counter: str) -> None:
    count = Path(counter)

    async def work(tag: str, hang: bool = False) -> str:
        """Does some work, counted."""
        with count.open("a") as f:
            f.write(tag + "\n")
        if hang:
            say(f"running {tag}")
            await asyncio.Event().wait()
        return f"{tag} done"

    class Marker(EventHandler):
        """After the plugin (added later): what it marks is saved."""

        async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
            say("saved")
            if scenario == "saved":
                await asyncio.Event().wait()

        async def on_tool_result(self, turn: Turn, message: ChatMessage) -> None:
            say(f"result {message.tool_call_id}")

    calls = {
        "saved": [ToolCall("c1", "work", '{"tag": "a"}')],
        "running": [ToolCall("c1", "work", '{"tag": "a", "hang": true}')],
        "one_result": [ToolCall("c1", "work", '{"tag": "a"}'), ToolCall("c2", "work", '{"tag": "b", "hang": true}')],
    }[scenario]
    store = await connect_store(url)
    plugin = PersistencePlugin.from_store("p", store, user, tenant, user, session)
    provider = ScriptedProvider([["Working on it. ", *calls], "never reached"])
    agent = await (LLMAgentBuilder().with_provider(provider).with_tools([work]).with_persistence_plugin(plugin)
                   .with_event_handler(Marker()).build_async())
    await agent.chat("do the work")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
