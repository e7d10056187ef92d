"""Keyset pages: a page of rows and where the next one starts, so that page 1,000 costs what page 1 does.

An OFFSET page makes the database walk and drop every row before it (O(offset)); a keyset page starts right
after the last row seen, by an index on the order's own columns. Lists ordered by time carry a
:class:`Cursor` (the last row's time and id: ids break ties between rows of one time); a transcript's order is
its ``seq``, an int. A cursor travels through the CLI and the service as opaque text (:meth:`Cursor.token`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from ..errors import ValidationError
from ..ids import as_utc

__all__ = ["Cursor", "Page"]

T = TypeVar("T")


@dataclass(frozen=True)
class Cursor:
    """Where a time-ordered list (newest first) stopped: the last row's time and id."""

    time: datetime
    id: uuid.UUID

    def token(self) -> str:
        """The cursor as opaque URL-safe text."""
        raw = f"{as_utc(self.time).isoformat(timespec='microseconds')}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """A cursor from :meth:`token`'s text; anything else is a ValidationError naming it."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, _, ident = text.partition("|")
            return cls(as_utc(datetime.fromisoformat(when)), uuid.UUID(ident))
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            shown = token if isinstance(token, str) and len(token) <= 80 else f"{str(token)[:80]}…"
            raise ValidationError(f"not a page cursor this library handed out: {shown!r}") from None


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows of one page, and the cursor of the next page (None: this was the last)."""

    items: list[T]
    next: Cursor | None
