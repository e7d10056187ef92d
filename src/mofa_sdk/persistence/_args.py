"""How a store's public methods take their arguments: each method calls these on its own arguments first.

Ids may be UUIDs or UUID strings in any case; agent codes and provider names are looked up in the form they
are stored in (NFKC); entities are checked again, since ``model_copy(update=...)`` and ``model_construct``
skip pydantic's validation. A value no store could hold is an error before anything is read or written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from .._validate import check_count, check_key
from ..entities import Entity
from ..errors import ConfigError
from ..ids import parse_uuid

__all__ = ["agent_code", "as_id", "as_optional_id", "checked", "checked_all", "count", "provider_name"]

E = TypeVar("E", bound=Entity)

#: ``value`` (a UUID, or a UUID string in any case) as a UUID; a ConfigError naming ``name`` otherwise
as_id = parse_uuid


def as_optional_id(value: object, name: str) -> uuid.UUID | None:
    """An id that may be absent (None: "any")."""
    return None if value is None else parse_uuid(value, name)


def checked(value: E, kind: type[E], name: str) -> E:
    """``value`` validated again as a ``kind``, as a new object (what is written is what was checked)."""
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return kind(**value.__dict__)  # the fields (a pydantic model's __dict__), without iterating the model


def checked_all(values: Sequence[E], kind: type[E], name: str) -> list[E]:
    return [checked(v, kind, name) for v in values]


def agent_code(value: object) -> str:
    return check_key(value, "agent_code")


def provider_name(value: object) -> str:
    return check_key(value, "provider_name")


#: a count argument (``k``): an integer from 0 to 2**63 - 1, else a ConfigError naming it
count = check_count
