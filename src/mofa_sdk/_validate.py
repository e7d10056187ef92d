"""The value rules every store shares, checked once before anything is written.

The bounds are those of the narrowest store, so a value one store keeps is never refused by another:
PostgreSQL ``integer`` columns hold 32 bits, SQLite integers and PostgreSQL ``bigint`` 64.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from .errors import ConfigError, ValidationError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "MAX_JSON_DEPTH",
    "MAX_WINDOW_ROUNDS",
    "check_count",
    "check_json",
    "check_key",
    "check_label",
    "check_text",
    "check_window",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MAX = 2**63 - 1
#: dicts and lists nested deeper than this are refused (decoding them back would hit Python's recursion limit)
MAX_JSON_DEPTH = 100
#: the largest sliding window: what an agent row's ``context_limit`` can hold
MAX_WINDOW_ROUNDS = INT32_MAX

# Invisible code points that are not in a "C" category, so the category test misses them (Unicode's
# Default_Ignorable_Code_Point minus Cf): Hangul fillers, Khmer inherent vowels, variation selectors …
_IGNORABLE = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180D), (0x180F, 0x180F),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0100, 0xE01EF),
)  # fmt: skip


def check_text(value: str, field: str) -> str:
    """Refuse a ``str`` that UTF-8 cannot encode (a lone surrogate) before anything is written."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{field} contains a character UTF-8 cannot encode ({value[exc.start]!r} at index {exc.start})"
        ) from None
    return value


def _too_deep(value: Any, enclosing: int) -> bool:
    """Whether ``value``, inside ``enclosing`` dicts and lists, nests more than MAX_JSON_DEPTH of them.
    The recursion stops there, so a value nested 100,000 deep (or one that contains itself) is refused
    without reaching the interpreter's recursion limit."""
    if isinstance(value, dict | list | tuple):
        if enclosing >= MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        return any(_too_deep(v, enclosing + 1) for v in children)
    return False


def check_json(value: Any, field: str) -> Any:
    """``value`` as every store returns it, or a ValidationError: not JSON (sets, bytes, NaN, non-string
    keys, lone surrogates), nested deeper than MAX_JSON_DEPTH, or not surviving a JSON round trip."""
    if _too_deep(value, 0):
        raise ValidationError(
            f"{field} is nested deeper than {MAX_JSON_DEPTH} levels of dicts and lists (or contains itself)"
        )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
        back = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be JSON-serialisable: {exc}") from None
    # json.dumps turns non-str keys (int, None …) into strings silently; a round trip would not be exact.
    if back != value:
        raise ValidationError(f"{field} does not survive a JSON round trip (non-string keys or tuples?)")
    # what the databases read back (plain dict, list, int, float …), so the in-memory store holds the same
    return back


def _invisible(ch: str) -> bool:
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
        return True
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _IGNORABLE)


def check_key(value: object, field: str) -> str:
    """An identifier a tenant looks rows up by (agent code, provider name), in NFKC form.

    Look-alikes must not name two rows: full-width letters and compatibility forms are folded by NFKC;
    invisible and control characters and surrounding whitespace are refused."""
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be text, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    key = unicodedata.normalize("NFKC", check_text(value, field))
    if not key:
        raise ValidationError(f"{field} must not be empty")
    if key != key.strip():
        raise ValidationError(f"{field} must not start or end with whitespace, got {value!r}")
    for i, ch in enumerate(key):
        if _invisible(ch):
            raise ValidationError(
                f"{field} must not contain invisible or control characters (U+{ord(ch):04X} at index {i})"
            )
    return key


def check_label(value: str, field: str) -> str:
    """A name shown to people (an agent's name): no NUL, no control characters, which would drive the
    terminal that prints it. Emoji joiners and the like stay."""
    check_text(value, field)
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc":
            raise ValidationError(f"{field} must not contain control characters (U+{ord(ch):04X} at index {i})")
    return value


def check_count(value: object, field: str) -> int:
    """A count argument (``k`` of ``get_last_messages``): an integer from 0 to 2**63 - 1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX:
        raise ConfigError(f"{field} must be an integer from 0 to 2**63 - 1, got {value!r}")
    return value


def check_window(rounds: object) -> int | None:
    """A sliding window: a number of rounds from 0 to MAX_WINDOW_ROUNDS, or None for every round."""
    if rounds is None:
        return None
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 0 <= rounds <= MAX_WINDOW_ROUNDS:
        raise ConfigError(
            f"the sliding window must be a number of rounds from 0 to {MAX_WINDOW_ROUNDS} or None, got {rounds!r}"
        )
    return rounds
