"""Checks every store applies to the values of its in-place updates, so that none accepts what another refuses.

Whole entities are checked by ``_args.checked`` at each entry point; ``update_message`` and ``update_session``
take loose fields, which are checked here the way the entities check them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

from .._validate import INT64_MAX
from ..entities import MessageStatus, Session, SessionSettings, SettingsChange, check_json, check_text
from ..errors import ConfigError, ValidationError
from ..ids import as_utc
from ._store import Unset

__all__ = [
    "check_before",
    "check_delta_ends",
    "check_message_update", "check_session_settings", "check_session_update"]

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


def check_delta_ends(delta_ends: Any) -> Any:
    """The ``delta_ends`` of ``update_message`` as a Message checks them (None clears them)."""
    if isinstance(delta_ends, Unset) or delta_ends is None:
        return delta_ends
    if not isinstance(delta_ends, list) or not all(
        isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= INT64_MAX for e in delta_ends
    ):
        raise ValidationError("delta_ends must be a list of character offsets (ints >= 0)")
    return list(delta_ends)


def check_session_update(tenant_id: uuid.UUID, title: Any, metadata: Any) -> Any:
    """Run Session's own validators on the new values (a throw-away Session does it); the metadata to write."""
    probe: dict[str, Any] = {}
    if not isinstance(title, Unset):
        probe["title"] = title
    if not isinstance(metadata, Unset):
        probe["metadata"] = metadata
    checked = Session(tenant_id=tenant_id, user_id=tenant_id, **probe)
    return metadata if isinstance(metadata, Unset) else checked.metadata


def check_session_settings(
    tenant_id: uuid.UUID, settings: Any, changes: Any
) -> tuple[SessionSettings, list[SettingsChange]]:
    """The arguments of ``record_session_settings``, checked as a Session checks its fields."""
    if not isinstance(settings, SessionSettings):
        raise ConfigError(f"settings must be a SessionSettings, got {type(settings).__name__}")
    if not isinstance(changes, Sequence) or not all(isinstance(c, SettingsChange) for c in changes):
        raise ConfigError("changes must be a sequence of SettingsChange")
    checked = Session(tenant_id=tenant_id, user_id=tenant_id, settings=settings, settings_changes=list(changes))
    assert checked.settings is not None
    return checked.settings, checked.settings_changes


def check_before(before: Any) -> datetime:
    """The cut-off of ``cleanup_old_records``, in UTC."""
    if not isinstance(before, datetime):
        raise ConfigError(f"before must be a datetime, got {type(before).__name__}")
    return as_utc(before)
