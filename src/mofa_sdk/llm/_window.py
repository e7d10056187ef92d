"""The sliding window: which past messages the model sees. Pure functions, no I/O.

A *round* is a user message and everything after it up to the next user message (the assistant reply,
tool messages, partial replies). A round is *complete* when it holds an assistant reply, whole or partial:
a cancelled, failed or interrupted reply is what the user saw, so it counts. A user message that never
got a reply is not a complete round and is never sent. Messages before the first user message and
system messages inside the history belong to no round and are dropped (the system prompt is given
separately).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ConfigError
from ._tokens import estimate_tokens
from ._types import ChatMessage

__all__ = ["complete_rounds", "select_window", "split_rounds", "trim_history"]

Round = list[ChatMessage]


def split_rounds(history: Sequence[ChatMessage]) -> list[Round]:
    """The rounds of ``history`` in order, complete or not."""
    rounds: list[Round] = []
    for message in history:
        if message.role == "user":
            rounds.append([message])
        elif message.role != "system" and rounds:
            rounds[-1].append(message)
    return rounds


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

    ``token_budget`` counts the contents of everything sent (system prompt included) and drops the oldest
    rounds until it fits; when even the system prompt and the new message alone exceed it, they are sent
    with no history rather than failing here (the provider decides what is too long).
    """
    _check_rounds(rounds)
    if token_budget is not None and (isinstance(token_budget, bool) or token_budget <= 0):
        raise ConfigError(f"token_budget must be a positive number of tokens or None, got {token_budget!r}")
    if isinstance(new_message, str):
        new_message = ChatMessage(role="user", content=new_message)
    chosen = _last(complete_rounds(history), rounds)
    if token_budget is not None and chosen:
        fixed = (count_tokens(system_prompt) if system_prompt else 0) + (
            count_tokens(new_message.content) if new_message is not None else 0
        )
        costs = [sum(count_tokens(m.content) for m in r) for r in chosen]
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
        out.append(new_message)
    return out


def trim_history(history: Sequence[ChatMessage], rounds: int | None) -> list[ChatMessage]:
    """Keep only what a future window can use: the last ``rounds`` complete rounds (all with ``None``).

    An unanswered user message is dropped: the next turn appends a new user message after it, so that
    round can never become complete. This keeps an agent's memory per session bounded by its window.
    """
    _check_rounds(rounds)
    return [m for r in _last(complete_rounds(history), rounds) for m in r]
