"""Checks every store applies to the values of its in-place updates, so that none accepts what another refuses.

Whole entities are checked by ``_args.checked`` at each entry point; ``update_message`` and ``update_session``
take loose fields, which are checked here the way the entities check them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, get_args

from ..entities import MessageStatus, Session, check_json, check_text
from ..errors import ConfigError, ValidationError
from ..ids import as_utc
from ._store import Unset

__all__ = ["check_before", "check_message_update", "check_session_update"]

_STATUSES = frozenset(get_args(MessageStatus))


def check_message_update(content: str | Unset, status: str | Unset, metadata: Any) -> Any:
    """The same checks a Message applies, for the fields of ``update_message``; the metadata to write."""
    if not isinstance(content, Unset):
        if not isinstance(content, str):
            raise ValidationError(f"content must be a str, got {type(content).__name__}")
        check_text(content, "content")
    if not isinstance(status, Unset) and status not in _STATUSES:
        raise ValidationError(f"status must be one of {', '.join(sorted(_STATUSES))}, got {status!r}")
    if not isinstance(metadata, Unset):
        if not isinstance(metadata, dict):
            raise ValidationError(f"metadata must be a dict, got {type(metadata).__name__}")
        return check_json(metadata, "metadata")
    return metadata


def check_session_update(tenant_id: uuid.UUID, title: Any, metadata: Any) -> Any:
    """Run Session's own validators on the new values (a throw-away Session does it); the metadata to write."""
    probe: dict[str, Any] = {}
    if not isinstance(title, Unset):
        probe["title"] = title
    if not isinstance(metadata, Unset):
        probe["metadata"] = metadata
    checked = Session(tenant_id=tenant_id, user_id=tenant_id, **probe)
    return metadata if isinstance(metadata, Unset) else checked.metadata


def check_before(before: Any) -> datetime:
    """The cut-off of ``cleanup_old_records``, in UTC."""
    if not isinstance(before, datetime):
        raise ConfigError(f"before must be a datetime, got {type(before).__name__}")
    return as_utc(before)
