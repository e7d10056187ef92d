"""The sliding window: property tests of its invariants, then examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import MessageRole, MessageStatus
from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import ChatMessage, select_window, trim_history
from mofa_sdk.llm._tokens import estimate_tokens

ROLES: st.SearchStrategy[MessageRole] = st.sampled_from(["user", "user", "assistant", "assistant", "tool", "system"])
STATUSES: st.SearchStrategy[MessageStatus] = st.sampled_from(
    ["complete", "complete", "cancelled", "error", "interrupted"]
)


@st.composite
def histories(draw: st.DrawFn) -> list[ChatMessage]:
    """Messages with unique contents (``"<index>:<padding>"``) so each can be traced back to its position."""
    n = draw(st.integers(0, 30))
    out = []
    for i in range(n):
        role = draw(ROLES)
        status: MessageStatus = draw(STATUSES) if role == "assistant" else "complete"
        pad = "x" * draw(st.integers(0, 40))
        call_id = f"call_{i}" if role == "tool" else None  # a tool message names the call it answers
        out.append(ChatMessage(role=role, content=f"{i}:{pad}", status=status, tool_call_id=call_id))
    return out


def index(m: ChatMessage) -> int:
    return int(m.content.split(":")[0])


def reference_rounds(history: list[ChatMessage]) -> list[list[int]]:
    """Rounds as lists of positions, computed independently of the code under test."""
    rounds: list[list[int]] = []
    for i, m in enumerate(history):
        if m.role == "user":
            rounds.append([i])
        elif rounds and m.role != "system":
            rounds[-1].append(i)
    return [r for r in rounds if any(history[j].role == "assistant" for j in r)]


def chosen_rounds(middle: list[ChatMessage]) -> list[list[int]]:
    rounds: list[list[int]] = []
    for m in middle:
        if m.role == "user":
            rounds.append([])
        assert rounds, "the window must start with a user message"
        rounds[-1].append(index(m))
    return rounds


NEW = ChatMessage(role="user", content="new question")


@given(
    history=histories(),
    rounds=st.none() | st.integers(0, 12),
    system=st.sampled_from(["", "You are helpful."]),
)
@settings(max_examples=300)
def test_window_invariants(history: list[ChatMessage], rounds: int | None, system: str) -> None:
    out = select_window(history, NEW, system_prompt=system, rounds=rounds)
    assert out[-1] is NEW
    if system:
        assert out[0] == ChatMessage(role="system", content=system)
        middle = out[1:-1]
    else:
        assert all(m.role != "system" for m in out)
        middle = out[:-1]
    assert all(m.role != "system" for m in middle)
    got = chosen_rounds(middle)
    complete = reference_rounds(history)
    expected = complete if rounds is None else complete[len(complete) - rounds :] if rounds else []
    # whole rounds, in their original order, the last ones; None keeps every complete round
    assert got == expected
    if rounds is not None:
        assert len(got) <= rounds


@given(
    history=histories(),
    rounds=st.none() | st.integers(0, 12),
    budget=st.integers(1, 200),
    system=st.sampled_from(["", "You are a careful assistant."]),
)
@settings(max_examples=300)
def test_token_budget(history: list[ChatMessage], rounds: int | None, budget: int, system: str) -> None:
    out = select_window(history, NEW, system_prompt=system, rounds=rounds, token_budget=budget)
    unbudgeted = select_window(history, NEW, system_prompt=system, rounds=rounds)
    cost = sum(estimate_tokens(m.content) for m in out)
    fixed = estimate_tokens(system) + estimate_tokens(NEW.content)
    assert out[-1] is NEW
    if system:
        assert out[0].role == "system"
    got = chosen_rounds(out[1:-1] if system else out[:-1])
    allowed = chosen_rounds(unbudgeted[1:-1] if system else unbudgeted[:-1])
    # the budget only drops the oldest rounds: what is left is a suffix of the unbudgeted window
    assert got == allowed[len(allowed) - len(got) :]
    if fixed <= budget:
        assert cost <= budget
        if len(got) < len(allowed):  # maximal: one more (older) round would not have fit
            extra = allowed[len(allowed) - len(got) - 1]
            assert cost + sum(estimate_tokens(history[i].content) for i in extra) > budget
    else:
        assert got == []  # not even the new message fits: system + new message only


@given(history=histories(), rounds=st.none() | st.integers(0, 12))
@settings(max_examples=200)
def test_trim_keeps_what_the_window_needs(history: list[ChatMessage], rounds: int | None) -> None:
    kept = trim_history(history, rounds)
    assert select_window(kept, NEW, system_prompt="s", rounds=rounds) == select_window(
        history, NEW, system_prompt="s", rounds=rounds
    )
    if rounds is not None:
        assert sum(1 for m in kept if m.role == "user") <= rounds
    # trimming twice changes nothing more
    assert trim_history(kept, rounds) == kept


def u(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def a(text: str, status: str = "complete") -> ChatMessage:
    return ChatMessage(role="assistant", content=text, status=status)  # type: ignore[arg-type]


def test_partial_replies_count_and_unanswered_messages_do_not() -> None:
    history = [
        u("q1"), a("r1"), u("q2"), a("r2 partial", "cancelled"), u("q3 unanswered"), u("q4"), a("r4", "error")
    ]
    out = select_window(history, "q5", system_prompt="sys", rounds=2)
    assert [m.content for m in out] == ["sys", "q2", "r2 partial", "q4", "r4", "q5"]
    assert out[2].status == "cancelled"


def test_tool_messages_never_split_a_round() -> None:
    tool = ChatMessage(role="tool", content="42", tool_call_id="call_1")
    history = [u("q1"), a("r1"), u("q2"), a(""), tool, a("the answer is 42")]
    out = select_window(history, "q3", system_prompt="", rounds=1)
    assert [m.content for m in out] == ["q2", "", "42", "the answer is 42", "q3"]


def test_window_zero_sends_only_system_and_new_message() -> None:
    out = select_window([u("q1"), a("r1")], "q2", system_prompt="sys", rounds=0)
    assert [m.content for m in out] == ["sys", "q2"]


def test_no_new_message_is_what_history_shows() -> None:
    out = select_window([u("q1"), a("r1"), u("q2"), a("r2")], None, system_prompt="", rounds=1)
    assert [m.content for m in out] == ["q2", "r2"]


def test_budget_smaller_than_new_message_sends_system_and_new() -> None:
    history = [u("q1"), a("r1")]
    long = "a very long question " * 20
    out = select_window(history, long, system_prompt="sys", rounds=None, token_budget=5)
    assert [m.role for m in out] == ["system", "user"]


def test_budget_counts_with_the_given_counter() -> None:
    history = [u("q1"), a("r1"), u("q2"), a("r2")]
    words = lambda text: len(text.split())  # noqa: E731
    out = select_window(history, "q3", system_prompt="", rounds=None, token_budget=3, count_tokens=words)
    assert [m.content for m in out] == ["q2", "r2", "q3"]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_window_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="window"):
        select_window([], "q", system_prompt="", rounds=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="window"):
        trim_history([], bad)  # type: ignore[arg-type]


def test_bad_budget_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="token_budget"):
        select_window([], "q", system_prompt="", rounds=None, token_budget=0)
