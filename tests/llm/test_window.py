"""The sliding window: property tests of its invariants, then examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mofa_sdk.entities import MessageRole, MessageStatus
from mofa_sdk.errors import ConfigError
from mofa_sdk.llm import ChatMessage, ToolCall, check_tool_sequence, select_window, trim_history
from mofa_sdk.llm._tokens import estimate_tokens, message_tokens
from mofa_sdk.llm._window import INTERRUPTED_TOOL_RESULT, interrupted_result, settle_tool_messages

ROLES: st.SearchStrategy[MessageRole] = st.sampled_from(["user", "user", "assistant", "assistant", "tool", "system"])
STATUSES: st.SearchStrategy[MessageStatus] = st.sampled_from(
    ["complete", "complete", "cancelled", "error", "interrupted"]
)


@st.composite
def histories(draw: st.DrawFn) -> list[ChatMessage]:
    """Messages with unique contents (``"<index>:<padding>"``) so each can be traced back to its position.
    Assistant messages may make tool calls (ids unique: ``c<index>_<k>``) or be empty; tool messages answer
    a call made before (once or twice), a call never made, or one made later."""
    n = draw(st.integers(0, 30))
    out: list[ChatMessage] = []
    made: list[str] = []
    for i in range(n):
        role = draw(ROLES)
        status: MessageStatus = draw(STATUSES) if role == "assistant" else "complete"
        pad = "x" * draw(st.integers(0, 40))
        content = f"{i}:{pad}"
        if role == "assistant":
            calls = tuple(ToolCall(f"c{i}_{k}", "f", "{}") for k in range(draw(st.sampled_from([0, 0, 1, 2]))))
            made += [c.id for c in calls]
            calls_only: bool = draw(st.booleans())
            if calls and calls_only:
                content = ""  # tool calls alone: the message is kept
            elif not calls and draw(st.integers(0, 5)) == 0:
                content = ""  # an empty reply: left out
            out.append(ChatMessage(role, content, status, tool_calls=calls))
            continue
        if role == "tool":
            answers_one: int = draw(st.integers(0, 3))
            call_id = draw(st.sampled_from(made)) if made and answers_one else f"c{i + 1}_0"
            out.append(ChatMessage(role, content, tool_call_id=call_id, is_error=draw(st.booleans())))
            continue
        out.append(ChatMessage(role=role, content=content, status=status))
    return out


def label(m: ChatMessage) -> str:
    """The history position a sent message came from, or ``x:<call id>`` for an interrupted result."""
    if m.role == "tool" and m.content == INTERRUPTED_TOOL_RESULT:
        return f"x:{m.tool_call_id}"
    if not m.content:  # an assistant message making calls only: its calls are named after its position
        return m.tool_calls[0].id[1:].split("_")[0]
    return m.content.split(":")[0]


def reference_settled(history: list[ChatMessage]) -> list[tuple[str, ChatMessage]]:
    """What the window may send of ``history``, each message labelled, computed independently of the code:
    each call followed by the first result naming it after it (else an interrupted one), nothing else of
    the tool messages, no empty assistant message."""
    out: list[tuple[str, ChatMessage]] = []
    for i, m in enumerate(history):
        if m.role == "tool" or (m.role == "assistant" and not m.content and not m.tool_calls):
            continue
        out.append((str(i), m))
        for call in m.tool_calls:
            later = [j for j in range(i + 1, len(history))
                     if history[j].role == "tool" and history[j].tool_call_id == call.id]  # fmt: skip
            if later:
                out.append((str(later[0]), history[later[0]]))
            else:
                out.append((f"x:{call.id}", interrupted_result(call.id)))
    return out


def reference_rounds(history: list[ChatMessage]) -> list[list[str]]:
    """Rounds as lists of labels."""
    rounds: list[list[tuple[str, ChatMessage]]] = []
    waiting: list[tuple[str, ChatMessage]] = []  # system messages: with the next user message's round
    for item in reference_settled(history):
        if item[1].role == "user":
            rounds.append([*waiting, item])
            waiting = []
        elif item[1].role == "system":
            waiting.append(item)
        elif rounds:
            rounds[-1].append(item)
    return [[lab for lab, _ in r] for r in rounds if any(m.role == "assistant" for _, m in r)]


def reference_opening(history: list[ChatMessage]) -> list[str]:
    """The labels of the system messages after the last user message (they open the new message's round)."""
    settled = reference_settled(history)
    users = [i for i, (_, m) in enumerate(settled) if m.role == "user"]
    return [lab for lab, m in settled[users[-1] + 1 if users else 0:] if m.role == "system"]


def chosen_rounds(middle: list[ChatMessage]) -> list[list[str]]:
    rounds: list[list[str]] = []
    previous: ChatMessage | None = None
    for m in middle:
        # a round opens with its system messages, if any, then its user message
        if m.role in ("system", "user") and (previous is None or previous.role != "system"):
            rounds.append([])
        assert rounds, "the window must start with a user or system message"
        rounds[-1].append(label(m))
        previous = m
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
        middle = out[:-1]
    # a system message of the history is sent only right before a user message (the round it opens)
    assert all(out[i + 1].role in ("system", "user") for i, m in enumerate(out[:-1]) if m.role == "system")
    got = chosen_rounds(middle)
    complete = reference_rounds(history)
    expected = complete if rounds is None else complete[len(complete) - rounds :] if rounds else []
    opening = reference_opening(history)
    # whole rounds, in their original order, the last ones; None keeps every complete round; then the
    # system messages that open the new message's round
    assert got == expected + ([opening] if opening else [])
    check_tool_sequence(out)  # what strict providers accept: every call answered, no orphan, no empty reply
    if rounds is not None:
        assert len(got) - (1 if opening else 0) <= rounds


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
    cost = sum(message_tokens(m) for m in out)
    n_open = len(reference_opening(history))  # the system messages opening the new round: always sent
    fixed = estimate_tokens(system) + sum(message_tokens(m) for m in out[len(out) - 1 - n_open:])
    assert out[-1] is NEW
    if system:
        assert out[0].role == "system"
    got = chosen_rounds(out[1 if system else 0:len(out) - 1 - n_open])
    allowed = chosen_rounds(unbudgeted[1 if system else 0:len(unbudgeted) - 1 - n_open])
    # the budget only drops the oldest rounds: what is left is a suffix of the unbudgeted window
    assert got == allowed[len(allowed) - len(got) :]
    if fixed <= budget:
        assert cost <= budget
        if len(got) < len(allowed):  # maximal: one more (older) round would not have fit
            extra = allowed[len(allowed) - len(got) - 1]
            settled = dict(reference_settled(history))
            assert cost + sum(message_tokens(settled[i]) for i in extra) > budget
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


def calls(*ids: str, text: str = "") -> ChatMessage:
    return ChatMessage("assistant", text, tool_calls=tuple(ToolCall(i, "lookup", '{"q": 1}') for i in ids))


def result(call_id: str, text: str, is_error: bool = False) -> ChatMessage:
    return ChatMessage("tool", text, tool_call_id=call_id, is_error=is_error)


def test_tool_messages_never_split_a_round() -> None:
    history = [u("q1"), a("r1"), u("q2"), calls("call_1"), result("call_1", "42"), a("the answer is 42")]
    out = select_window(history, "q3", system_prompt="", rounds=1)
    assert [m.content for m in out] == ["q2", "", "42", "the answer is 42", "q3"]
    assert out[1].tool_calls and out[2].tool_call_id == "call_1"


def test_results_follow_their_call_wherever_they_were_stored() -> None:
    # a repair row stored after a later user message, parallel results in another order
    history = [u("q1"), calls("c1", "c2"), result("c2", "two"), u("q2"), a("r2"), result("c1", "one")]
    out = select_window(history, "q3", system_prompt="", rounds=None)
    assert [(m.role, m.content) for m in out] == [
        ("user", "q1"), ("assistant", ""), ("tool", "one"), ("tool", "two"), ("user", "q2"), ("assistant", "r2"),
        ("user", "q3"),
    ]  # fmt: skip
    check_tool_sequence(out)


def test_an_unanswered_call_is_sent_with_an_interrupted_result() -> None:
    history = [u("q1"), calls("c1", "c2", text="checking"), result("c1", "ok")]
    out = select_window(history, "q2", system_prompt="", rounds=None)
    assert [m.content for m in out] == ["q1", "checking", "ok", INTERRUPTED_TOOL_RESULT, "q2"]
    assert (out[3].tool_call_id, out[3].is_error, out[3].status) == ("c2", True, "interrupted")
    check_tool_sequence(out)


def test_orphan_results_and_empty_replies_are_not_sent() -> None:
    history = [u("q1"), result("nobody", "orphan"), a("", "cancelled"), u("q2"), calls("c1"), result("c1", "r"),
               result("c1", "again"), a("done"), result("c9", "late")]  # fmt: skip
    out = select_window(history, "q3", system_prompt="", rounds=None)
    # q1 got only an empty cancelled reply: not a complete round
    assert [m.content for m in out] == ["q2", "", "r", "done", "q3"]
    check_tool_sequence(out)


def test_the_budget_counts_calls_and_results() -> None:
    big = '{"q": "' + "x" * 400 + '"}'
    history = [u("q1"), a("r1"), u("q2"), ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", big),)),
               result("c1", "ok"), a("r2")]  # fmt: skip
    out = select_window(history, "q3", system_prompt="", rounds=None, token_budget=60)
    # the round with the large call no longer fits; text alone would have (its texts are a few tokens)
    assert [m.content for m in out] == ["q3"]
    assert [m.content for m in select_window(history, "q3", system_prompt="", rounds=None, token_budget=200)][:2] \
        == ["q1", "r1"]


def test_settling_is_idempotent_and_free_for_text() -> None:
    text = [u("q"), a("r")]
    assert settle_tool_messages(text) == (text, [])
    history = [u("q1"), calls("c1", "c2"), result("c2", "two")]
    once, missing = settle_tool_messages(history)
    assert missing == ["c1"]
    assert settle_tool_messages(once) == (once, [])


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
