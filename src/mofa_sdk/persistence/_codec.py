"""Lossless storage of U+0000 where the database refuses it (PostgreSQL ``text`` and ``jsonb``).

Rows with no NUL anywhere are stored verbatim and stay readable from plain SQL. A row whose content
or metadata holds a NUL is stored with ``nul_escaped = true``: in its content and in every string of its
metadata (keys included), ``\\`` becomes ``\\\\`` and NUL becomes ``\\0``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["decode_row", "encode_row", "has_nul"]


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {fn(k): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\x00", "\\0")


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            nxt = s[i + 1]
            out.append("\x00" if nxt == "0" else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode_row(content: str, metadata: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """``(content, metadata, nul_escaped)`` as they are written."""
    if "\x00" not in content and not has_nul(metadata):
        return content, metadata, False
    return _escape(content), _map_strings(metadata, _escape), True


def decode_row(content: str, metadata: dict[str, Any], nul_escaped: bool) -> tuple[str, dict[str, Any]]:
    if not nul_escaped:
        return content, metadata
    return _unescape(content), _map_strings(metadata, _unescape)
