"""The turn engine with tools a client declares (what ``mofa serve`` does for an API request): the tools are
sent and never run, the reply making calls ends the turn, and a later turn whose new input is the client's
results (no user message) writes them before the provider is called, checked against the session's calls. On
a real SQLite file, with the scripted provider (a pure fake of the model: what is stored is the real store's)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from mofa_sdk.errors import ValidationError
from mofa_sdk.llm import ChatMessage, ScriptedProvider, ToolCall, ToolResult, ToolSpec
from mofa_sdk.persistence import SqliteStore, TurnEngine, TurnOptions

WEATHER = ToolSpec("get_weather", "The weather.", {"type": "object", "properties": {"city": {"type": "string"}}})
CALL = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')


def result(call_id: str, text: str) -> ChatMessage:
    return ChatMessage.for_tool_result(ToolResult(call_id, text))


async def test_client_tools_end_the_turn_and_results_continue_it(tmp_path: Path) -> None:
    # a lease far shorter than the client takes to answer: its calls must still not read as interrupted
    store = await SqliteStore.connect(f"sqlite:///{tmp_path / 'tools.db'}", streaming_lease_seconds=0.05)
    provider = ScriptedProvider([[CALL], "Rain in Oslo."])
    tenant, user = uuid.uuid4(), uuid.uuid4()
    engine = None
    try:
        engine = TurnEngine(store, provider=provider, client_answers_calls=True)
        opened = await engine.open(tenant, user, None)
        started = opened.start("Weather in Oslo?", TurnOptions(tools=[WEATHER], tool_choice="get_weather"))
        assert [t async for t in started.stream] == []
        assert started.stream.tool_calls == (CALL,) and started.stream.finish_reason == "tool_calls"
        _, params = provider.requests[0]
        assert params.tools == (WEATHER,) and params.tool_choice == "get_weather"
        await opened.aclose()
        await asyncio.sleep(0.2)

        again = await engine.open(tenant, user, opened.session_id)
        with pytest.raises(ValidationError, match="call_9"):  # answers no call of the last reply
            again.start(None, TurnOptions(earlier=[result("call_9", "?")], tools=[WEATHER]))
        with pytest.raises(ValidationError, match="tool results"):  # no user message and no results
            again.start(None, TurnOptions(tools=[WEATHER]))
        started = again.start(None, TurnOptions(earlier=[result("call_1", "rain")], tools=[WEATHER]))
        assert "".join([t async for t in started.stream]) == "Rain in Oslo."
        sent, _ = provider.requests[1]
        assert [(m.role, m.tool_call_id) for m in sent] == [("user", None), ("assistant", None), ("tool", "call_1")]
        assert sent[1].tool_calls == (CALL,)
        await again.aclose()
        rows = await store.get_session_messages(tenant, opened.session_id)
        assert [(r.role, r.content, r.status) for r in rows] == [
            ("user", "Weather in Oslo?", "complete"), ("assistant", "", "complete"), ("tool", "rain", "complete"),
            ("assistant", "Rain in Oslo.", "complete")]  # no "interrupted" answer was recorded for call_1
        assert rows[1].tool_calls[0].id == "call_1" and rows[3].parent_message_id == rows[2].id
    finally:
        if engine is not None:
            await engine.aclose()
        await store.close()


@pytest.mark.local_model
async def test_the_local_model_refuses_tools_and_images_before_anything_is_written(tmp_path: Path) -> None:
    from mofa_sdk.llm import ImagePart, LocalProvider, TextPart

    store = await SqliteStore.connect(f"sqlite:///{tmp_path / 'local.db'}")
    local = LocalProvider()
    tenant, user = uuid.uuid4(), uuid.uuid4()
    try:
        engine = TurnEngine(store, provider=local)
        opened = await engine.open(tenant, user, None, create_with_turn=True)
        for options in (TurnOptions(tools=[WEATHER]),
                        TurnOptions(user_parts=[TextPart("hi"), ImagePart("https://example.com/x.png")])):
            with pytest.raises(ValidationError, match="cannot take tools"):
                opened.start("hi", options)
        await opened.aclose()
        assert await store.get_user_sessions(tenant, user) == []
    finally:
        await local.aclose()
        await store.close()
