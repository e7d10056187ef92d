"""Tool calls assembled from streamed deltas: any split gives the same calls; late, repeated and missing ids."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mofa_sdk.errors import ValidationError
from mofa_sdk.llm import ToolCall
from mofa_sdk.llm._toolcalls import (
    ToolCallAccumulator,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ARGUMENTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4).map(json.dumps)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    st.lists(ARGUMENTS, min_size=1, max_size=4),
    st.lists(st.lists(st.integers(0, 400), max_size=12), min_size=4, max_size=4),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_any_split_and_interleaving_gives_the_same_calls(
    arguments: list[str], cuts: list[list[int]], rnd: object, repeat: bool
) -> None:
    assert isinstance(rnd, random.Random)
    streams = []
    for i, text in enumerate(arguments):
        pieces: list[tuple[int, str | None, str | None, str | None]] = [(i, f"call_{i}", f"fn_{i}", None)]
        for piece in split(text, cuts[i]):
            pieces.append((i, f"call_{i}" if repeat else None, f"fn_{i}" if repeat else None, piece))
        streams.append(pieces)
    # interleave the calls' pieces, each call's own order kept (servers stream parallel calls this way)
    acc = ToolCallAccumulator()
    events: list[ToolCallStarted | ToolCallArgumentsDelta] = []
    while any(streams):
        stream = rnd.choice([s for s in streams if s])
        index, call_id, name, fragment = stream.pop(0)
        events += acc.feed(index, call_id, name, fragment)
    expected = [ToolCall(f"call_{i}", f"fn_{i}", text) for i, text in enumerate(arguments)]
    assert acc.calls() == expected
    assert all(call.arguments_valid for call in acc.calls())
    assert [f.call for f in acc.finished()] == expected
    # the events alone rebuild the same calls (what a consumer of the provider stream does)
    again = ToolCallAccumulator()
    for event in events:
        if isinstance(event, ToolCallStarted):
            again.feed(event.index, event.id, event.name)
        else:
            again.feed(event.index, arguments=event.text)
    assert again.calls() == expected
    assert sum(isinstance(e, ToolCallStarted) for e in events) == len(arguments)


def test_id_and_name_sent_late_hold_the_arguments_until_the_call_can_be_announced() -> None:
    acc = ToolCallAccumulator()
    assert acc.feed(0, arguments='{"a"') == []
    assert acc.feed(0, arguments=": 1}") == []
    assert acc.feed(0, name="f") == [ToolCallStarted(0, None, "f"), ToolCallArgumentsDelta(0, '{"a": 1}')]
    assert acc.feed(0, id="call_late") == []
    assert acc.calls() == [ToolCall("call_late", "f", '{"a": 1}')]


def test_a_different_id_or_name_later_does_not_rename_the_call() -> None:
    acc = ToolCallAccumulator()
    acc.feed(0, "call_a", "first", "{}")
    acc.feed(0, "call_b", "second", "")
    assert acc.calls() == [ToolCall("call_a", "first", "{}")]


def test_a_call_without_an_id_gets_a_stable_one() -> None:
    acc = ToolCallAccumulator()
    acc.feed(0, name="f", arguments="{}")
    acc.feed(1, name="g", arguments="{}")
    first = acc.calls()
    assert first == acc.calls() and first[0].id != first[1].id and first[0].id.startswith("call_")


def test_a_cut_stream_keeps_the_partial_arguments_and_says_they_are_not_json() -> None:
    acc = ToolCallAccumulator()
    acc.feed(0, "call_1", "get_weather", '{"city": "Par')
    [call] = acc.calls()
    assert call.arguments == '{"city": "Par' and not call.arguments_valid


def test_calls_come_in_index_order_and_a_nameless_call_is_reported_not_invented() -> None:
    acc = ToolCallAccumulator()
    acc.feed(2, "c2", "two", "{}")
    acc.feed(0, "c0", "zero", "{}")
    acc.feed(1, "c1", None, '{"x": 1}')
    assert [c.name for c in acc.calls()] == ["zero", "two"]
    assert acc.nameless() == [1]
    assert acc.finished() == [ToolCallFinished(0, ToolCall("c0", "zero", "{}")),
                              ToolCallFinished(2, ToolCall("c2", "two", "{}"))]


@pytest.mark.parametrize(("args", "words"), [((-1,), "index"), (("0",), "index"), ((0, 5), "id must be text"),
                                              ((0, None, None, 3), "arguments must be text")])
def test_bad_deltas_are_refused(args: tuple[object, ...], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        ToolCallAccumulator().feed(*args)  # type: ignore[arg-type]
