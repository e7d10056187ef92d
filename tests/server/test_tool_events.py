"""The run log's tool-call events, pure: their JSON (native SSE), the NOTIFY codec (fragments that fit a
payload and rejoin into the event), the replay from a reply row, and the in-process log of a run."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import Message, MessageToolCall
from mofa_sdk.server.runs import (
    Deltas,
    Principal,
    Run,
    TextDeltaEvent,
    ToolArgumentsEvent,
    ToolCallDoneEvent,
    ToolCallStartedEvent,
    ToolEvent,
    ToolResultEvent,
    decode,
    delta_count,
    delta_messages,
    encode,
    event_json,
    event_of_fragment,
    event_of_json,
    events_of_row,
)


def test_each_tool_event_round_trips_through_its_json() -> None:
    events: list[ToolEvent] = [
        ToolCallStartedEvent(1, 0, "call_1", "get_weather"), ToolCallStartedEvent(2, 1, None, "late_id"),
        ToolArgumentsEvent(3, 0, '{"city": "Zü'), ToolCallDoneEvent(4, 0, "call_1", "get_weather", '{"a": 1}'),
        ToolResultEvent(5, "call_1", "sunny", is_error=True)]
    for e in events:
        assert event_of_json(e.n, e.kind, event_json(e)) == e
    assert event_json(events[0]) == {"index": 0, "id": "call_1", "name": "get_weather"}


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=5000), st.text(min_size=1, max_size=64))
def test_tool_events_cross_the_bus_in_fragments_that_fit(arguments: str, name: str) -> None:
    arguments = arguments.encode("utf-8", "replace").decode("utf-8")
    name = name.encode("utf-8", "replace").decode("utf-8")
    events: list[TextDeltaEvent | ToolEvent] = [
        TextDeltaEvent(1, "Checking."), ToolCallStartedEvent(2, 0, "c", name), ToolArgumentsEvent(3, 0, arguments),
        ToolCallDoneEvent(4, 0, "c", name, arguments)]
    pieces: dict[int, list[str]] = {}
    kinds: dict[int, str] = {}
    for m in delta_messages(events):
        payload = uuid.uuid4().hex + encode(m, 10**12)
        assert len(payload.encode()) < 8000
        back = decode(payload[32:])
        assert back == m and isinstance(back, Deltas)
        for f in back.fragments:
            pieces.setdefault(f.n, []).append(f.text)
            kinds[f.n] = f.kind
    assert [event_of_fragment(n, kinds[n], "".join(pieces[n])) for n in sorted(pieces)] == events


def test_a_reply_row_replays_its_text_then_each_call_as_three_events() -> None:
    row = Message(session_id=uuid.uuid4(), tenant_id=uuid.uuid4(), user_id=uuid.uuid4(), role="assistant",
                  content="On it.", delta_ends=[3, 6], tool_calls=[
                      MessageToolCall(id="a", name="f", arguments="{}"),
                      MessageToolCall(id="b", name="g", arguments='{"x": 1}')])
    events = events_of_row(row, 0)
    assert [e.kind for e in events] == ["delta", "delta", *["tool_call.started", "tool_call.arguments",
                                                            "tool_call.done"] * 2]
    assert [e.n for e in events] == list(range(1, 9)) and delta_count(row) == 8
    assert events[7] == ToolCallDoneEvent(8, 1, "b", "g", '{"x": 1}')
    assert events_of_row(row, 6) == events[6:]


async def test_a_runs_log_numbers_text_and_tool_events_in_one_sequence() -> None:
    run = Run(Principal(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()), uuid.uuid4())
    run.parts.append("Hi ")
    started = run.add_tool_event(ToolCallStartedEvent(0, 0, "c", "f"))
    run.add_tool_event(ToolArgumentsEvent(0, 0, "{}"))
    run.parts.append("there")
    assert started.n == 2 and run.text == "Hi there"
    assert run.events_after(1) == [ToolCallStartedEvent(2, 0, "c", "f"), ToolArgumentsEvent(3, 0, "{}"),
                                   TextDeltaEvent(4, "there")]
