"""The sliding window: which past messages the model sees. Pure functions, no I/O.

A *round* is a user message and everything after it up to the next user message: the assistant's
messages (tool calls, the final reply), the tool results, partial replies. A round is *complete* when it
holds an assistant message, whole or partial: a cancelled, failed or interrupted reply, or tool calls that
were interrupted, are what the user saw, so they count. A user message that never got a reply is not a
complete round and is never sent. A system message inside the history (a client's ``system`` or
``developer`` item) belongs to the round of the user message after it, and is sent with that round, in
place; those after the last user message open the new message's round: always sent, right before it (the
system prompt is given separately).

What is sent is always a sequence strict providers accept (:func:`check_tool_sequence`): before rounds are
chosen, :func:`settle_tool_messages` puts each call's result right after the message that made it, answers
a call that has none with an interrupted error result, and leaves out what would be refused (a result
answering no call, an assistant message with neither text nor calls). Rounds are whole, so a call is never
sent without its result, and the token budget counts calls and results (``message_tokens``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ._tokens import estimate_tokens, message_tokens
from ._types import ChatMessage

__all__ = [
    "INTERRUPTED_TOOL_RESULT",
    "complete_rounds",
    "interrupted_result",
    "select_window",
    "settle_tool_messages",
    "split_rounds",
    "trim_history",
]

Round = list[ChatMessage]

#: the result a tool call gets when it never finished (a crash, a cancel): stored by the repair that runs
#: when a session is opened, and given in memory by :func:`settle_tool_messages` where no row says more
INTERRUPTED_TOOL_RESULT = "The tool call was interrupted and did not finish; it has no result."


def interrupted_result(call_id: str) -> ChatMessage:
    """The error result of a call that never finished."""
    return ChatMessage("tool", INTERRUPTED_TOOL_RESULT, "interrupted", tool_call_id=call_id, is_error=True)


def _needs_settling(history: Sequence[ChatMessage]) -> bool:
    return any(m.tool_calls or m.role == "tool" or (m.role == "assistant" and not m.content) for m in history)


def settle_tool_messages(history: Sequence[ChatMessage]) -> tuple[list[ChatMessage], list[str]]:
    """``history`` as strict providers accept it, and the ids of the calls that had no result.

    Each assistant message with tool calls is followed by one result per call, in the order of the calls:
    the first result after it that names the call (wherever it was stored: a repair row may come later),
    else :func:`interrupted_result`. A result that answers no call before it, or a call already answered,
    is left out, and so is an assistant message with neither text nor calls (a cancelled empty reply).
    A history with no tool messages and no empty reply is returned as it is (a copy).
    """
    if not _needs_settling(history):
        return list(history), []
    # which stored result answers each call: the first one after the call that names it (ids may repeat
    # across messages on some servers: a result goes to the latest call of its id still open)
    open_calls: dict[str, tuple[int, str]] = {}  # call id -> (index of the assistant message, call id)
    answers: dict[tuple[int, str], ChatMessage] = {}
    for i, m in enumerate(history):
        if m.role == "assistant":
            for call in m.tool_calls:
                open_calls[call.id] = (i, call.id)
        elif m.role == "tool" and m.tool_call_id is not None:
            key = open_calls.pop(m.tool_call_id, None)
            if key is not None:
                answers[key] = m
    out: list[ChatMessage] = []
    missing: list[str] = []
    for i, m in enumerate(history):
        if m.role == "tool":
            continue  # placed after its call below, or left out
        if m.role == "assistant" and not m.content and not m.tool_calls:
            continue
        out.append(m)
        for call in m.tool_calls:
            answer = answers.get((i, call.id))
            if answer is None:
                missing.append(call.id)
                answer = interrupted_result(call.id)
            out.append(answer)
    return out, missing


def split_rounds(history: Sequence[ChatMessage]) -> list[Round]:
    """The rounds of ``history`` (settled: :func:`settle_tool_messages`) in order, complete or not."""
    rounds: list[Round] = []
    opening: Round = []  # system messages waiting for the user message whose round they open
    for message in settle_tool_messages(history)[0]:
        if message.role == "user":
            rounds.append([*opening, message])
            opening = []
        elif message.role == "system":
            opening.append(message)
        elif rounds:
            rounds[-1].append(message)
    return rounds


def _opening(history: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The system messages after the last user message of ``history``: they open the next round."""
    tail: list[ChatMessage] = []
    for message in reversed(history):
        if message.role == "user":
            break
        if message.role == "system":
            tail.append(message)
    return tail[::-1]


def _is_complete(round_: Round) -> bool:
    return any(m.role == "assistant" for m in round_)


def complete_rounds(history: Sequence[ChatMessage]) -> list[Round]:
    """Only the rounds that hold an assistant reply, in order."""
    return [r for r in split_rounds(history) if _is_complete(r)]


def _check_rounds(rounds: int | None) -> None:
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0):
        raise ConfigError(f"the window must be a number of rounds >= 0 or None, got {rounds!r}")


def _last(items: list[Round], n: int | None) -> list[Round]:
    if n is None:
        return items
    return items[len(items) - n :] if n else []


def select_window(
    history: Sequence[ChatMessage],
    new_message: ChatMessage | str | None,
    *,
    system_prompt: str,
    rounds: int | None,
    token_budget: int | None = None,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> list[ChatMessage]:
    """What to send: the system prompt (omitted when empty), the last ``rounds`` complete rounds
    (``None``: all of them), then ``new_message`` (``None``: nothing, which is what ``agent.history`` shows).

    ``token_budget`` counts everything sent (system prompt included; texts, tool calls and results as
    :func:`message_tokens` does) and drops the oldest rounds until it fits; when even the system prompt and
    the new message alone exceed it, they are sent with no history rather than failing here (the provider
    decides what is too long).
    """
    _check_rounds(rounds)
    if token_budget is not None and (isinstance(token_budget, bool) or token_budget <= 0):
        raise ConfigError(f"token_budget must be a positive number of tokens or None, got {token_budget!r}")
    if isinstance(new_message, str):
        new_message = ChatMessage(role="user", content=new_message)
    chosen = _last(complete_rounds(history), rounds)
    opening = _opening(history) if new_message is not None else []
    if token_budget is not None and chosen:
        fixed = (count_tokens(system_prompt) if system_prompt else 0) + sum(
            message_tokens(m, count_tokens) for m in [*opening, *([new_message] if new_message else [])]
        )
        costs = [sum(message_tokens(m, count_tokens) for m in r) for r in chosen]
        total = fixed + sum(costs)
        start = 0
        while start < len(chosen) and total > token_budget:
            total -= costs[start]
            start += 1
        chosen = chosen[start:]
    out: list[ChatMessage] = []
    if system_prompt:
        out.append(ChatMessage(role="system", content=system_prompt))
    for r in chosen:
        out.extend(r)
    if new_message is not None:
        out.extend(opening)
        out.append(new_message)
    return out


def trim_history(history: Sequence[ChatMessage], rounds: int | None) -> list[ChatMessage]:
    """Keep only what a future window can use: the last ``rounds`` complete rounds (all with ``None``).

    An unanswered user message is dropped: the next turn appends a new user message after it, so that
    round can never become complete. This keeps an agent's memory per session bounded by its window. The
    system messages that open the next round are kept.
    """
    _check_rounds(rounds)
    return [*(m for r in _last(complete_rounds(history), rounds) for m in r), *_opening(history)]
