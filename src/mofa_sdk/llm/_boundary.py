"""What the stream layer checks at the provider boundary, for every provider: the text going out must be
encodable, the text coming back is repaired into valid Unicode, and usage counts must be plausible.

A provider can hand back text no database can store: a JSON ``\\ud83d\\ude00`` escape pair split across two
SSE chunks decodes to two lone surrogates, and some servers send a lone one. The user sees the reply either
way, so it is repaired rather than refused. Pure code, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..entities import check_text
from ._messages import FilePart, ImagePart
from ._types import ChatMessage, Usage

__all__ = ["MAX_TOKEN_COUNT", "TextRepair", "check_request", "implausible_usage"]

#: the largest count a PostgreSQL ``integer`` column holds; no real call comes near it
MAX_TOKEN_COUNT = 2**31 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_high(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


class TextRepair:
    """Turns a stream of deltas into valid Unicode, delta by delta: a surrogate pair split across two deltas
    is joined, a lone surrogate becomes U+FFFD. At most one trailing high surrogate is held back until the
    next delta shows whether its partner follows. ``finish()`` releases it (as U+FFFD) at the end."""

    __slots__ = ("_held", "joined", "replaced")

    def __init__(self) -> None:
        self._held = ""
        #: surrogate pairs joined into one character
        self.joined = 0
        #: lone surrogates replaced by U+FFFD
        self.replaced = 0

    def feed(self, text: str) -> str:
        """The repaired text to pass on now (possibly empty)."""
        if not self._held and (text.isascii() or _SURROGATE.search(text) is None):
            return text  # the common case, one scan
        text = self._held + text
        self._held = ""
        if text and _is_high(text[-1]):
            text, self._held = text[:-1], text[-1]
        return self._repair(text)

    def finish(self) -> str:
        """What is still held back, repaired: a high surrogate whose partner never came is U+FFFD."""
        held, self._held = self._held, ""
        return self._repair(held)

    def _repair(self, text: str) -> str:
        surrogates = len(_SURROGATE.findall(text))
        if not surrogates:
            return text
        # UTF-16 pairs what pairs and replaces each unpaired code unit by exactly one U+FFFD
        fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        pairs = len(text) - len(fixed)
        self.joined += pairs
        self.replaced += surrogates - 2 * pairs
        return fixed

    def notes(self) -> list[str]:
        out = []
        if self.joined:
            out.append(f"joined {self.joined} surrogate pair(s) split across deltas")
        if self.replaced:
            out.append(f"replaced {self.replaced} lone surrogate(s) by U+FFFD")
        return out


def implausible_usage(usage: Usage) -> str | None:
    """Why a provider's usage cannot be right (a negative count, or one no INTEGER column holds), or None."""
    counts = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    bad = [
        f"{name}={value!r}"
        for name, value in counts.items()
        if type(value) is not int or not 0 <= value <= MAX_TOKEN_COUNT
    ]
    return ", ".join(bad) or None


def check_request(messages: Sequence[ChatMessage]) -> None:
    """Refuse, before anything is sent or saved, request text that UTF-8 cannot encode (a lone surrogate,
    as ``--system $'\\xff'`` gives): the HTTP client would fail to encode it and the failure would read as
    a bad response."""
    for index, message in enumerate(messages):
        what = "the system prompt" if message.role == "system" else f"the {message.role} message"
        check_text(message.content, f"{what} (request message {index})")
        if message.tool_calls or message.tool_call_id is not None or message.parts:
            _check_extras(message, f"{what} (request message {index})")


def _check_extras(message: ChatMessage, what: str) -> None:
    for call in message.tool_calls:
        check_text(call.id, f"a tool call id of {what}")
        check_text(call.name, f"the name of tool call {call.id!r} of {what}")
        check_text(call.arguments, f"the arguments of tool call {call.id!r} of {what}")
    if message.tool_call_id is not None:
        check_text(message.tool_call_id, f"the tool_call_id of {what}")
    for part in message.parts:
        if isinstance(part, ImagePart):
            check_text(part.url, f"an image URL of {what}")
        elif isinstance(part, FilePart):
            check_text(part.filename, f"a file name of {what}")
            check_text(part.data, f"a file's data of {what}")
