"""Identifiers and clocks: UUID v7 (time-ordered, made by the application) and UTC time."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

from .errors import ConfigError

__all__ = ["NIL_UUID", "as_utc", "parse_uuid", "utc_now", "uuid7"]

#: the tenant and user of a program that names none (a single-tenant, single-user default)
NIL_UUID = uuid.UUID(int=0)

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A UUID v7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit counter so ids made in one
    millisecond by this process still sort in creation order, then random bits."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive datetime is taken as UTC already (every stored time is UTC)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_uuid(value: object, what: str) -> uuid.UUID:
    """``value`` as a UUID, or a :class:`ConfigError` that names ``what`` was wrong. Never replaced silently."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{what} must be a UUID, got {value!r}")
