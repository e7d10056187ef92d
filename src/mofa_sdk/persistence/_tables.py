"""The tables of the SQL stores, each column named once with its kind, and the one mapping each way.

Column names are the entity's field names (plus ``nul_escaped`` on messages), in the order the migrations
create them. How a kind is written and read is the dialect's business (:mod:`._dialect`); what a table needs
beyond its kinds (the NUL codec of messages, the encrypted provider key) is done here, once for every dialect.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, SecretStr

from ..entities import Agent, ApiKey, Entity, LLMApiCall, Message, Provider, Session, SessionSettings
from ._secrets import decrypt_key, encrypt_key

if TYPE_CHECKING:
    from ._dialect import Dialect

__all__ = ["AGENT", "API_KEY", "CALL", "MESSAGE", "PROVIDER", "SESSION", "Kind", "Table", "json_value"]

#: what a column holds; ``secret`` is text holding an encrypted key, ``numeric`` an exact decimal read as float
Kind = Literal["uuid", "text", "int", "float", "numeric", "bool", "json", "time", "secret"]
E = TypeVar("E", bound=Entity)

#: columns an update never changes
_FIXED = frozenset({"id", "tenant_id", "create_time"})


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, for the converter caches
class Table(Generic[E]):
    name: str
    entity: type[E]
    columns: dict[str, Kind]
    #: how lists of its rows are ordered
    order: str = " ORDER BY id"
    _names: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", ", ".join(self.columns))  # every statement names them

    def cols(self, prefix: str = "") -> str:
        """The column list, e.g. for ``SELECT``; ``prefix`` qualifies each (``m.``)."""
        return ", ".join(prefix + c for c in self.columns) if prefix else self._names

    def values(self, d: Dialect, overrides: dict[str, str] | None = None) -> str:
        """The ``:name`` placeholder of each column (typed where the dialect needs it), or an override."""
        overrides = overrides or {}
        return ", ".join(overrides.get(c) or d.placeholder(c, k) for c, k in self.columns.items())

    def sets(self, d: Dialect) -> str:
        """``col = :col`` for every column an update may change."""
        return ", ".join(f"{c} = {d.placeholder(c, k)}" for c, k in self.columns.items() if c not in _FIXED)

    def params(self, entity: E, d: Dialect) -> dict[str, Any]:
        """The entity as the statement parameters of its row."""
        # a copy of the field values (a pydantic model keeps them in its __dict__; keys no statement names are
        # ignored), then only the converted columns touched: this runs for every row written
        row = entity.__dict__.copy()
        if "nul_escaped" in self.columns:
            row["content"], row["metadata"], row["nul_escaped"] = d.encode_nul(row["content"], row["metadata"])
        for c, write in _writers(self, d):
            if (v := row[c]) is not None:
                row[c] = write(v)
        return row

    def load(self, row: Sequence[Any], d: Dialect) -> E:
        """The entity of a row selected with :meth:`cols`."""
        fields = dict(zip(self.columns, row, strict=True))
        for c, read in _readers(self, d):
            if fields[c] is not None:
                fields[c] = read(fields[c])
        if "nul_escaped" in fields:
            fields["content"], fields["metadata"] = d.decode_nul(
                fields["content"], fields["metadata"], bool(fields.pop("nul_escaped"))
            )
        for c, k in self.columns.items():
            if k == "secret":
                plain = decrypt_key(fields[c], provider=str(fields.get("provider_name")))
                fields[c] = None if plain is None else SecretStr(plain)
        return self.entity(**fields)


Converters = tuple[tuple[str, Callable[[Any], Any]], ...]


# Per table and dialect, only the columns whose values are converted (most are passed as they are): rows are
# mapped on every read and write, so the kind lookups are done once.
@functools.cache
def _readers(table: Table[Any], d: Dialect) -> Converters:
    return tuple((c, d.from_db_of[k]) for c, k in table.columns.items() if k in d.from_db_of)


@functools.cache
def _writers(table: Table[Any], d: Dialect) -> Converters:
    """The columns whose values are converted, with their converters."""
    return tuple(
        (c, _secret_in if k == "secret" else _json_out(d.to_db_of.get(k)) if k == "json" else d.to_db_of[k])
        for c, k in table.columns.items()
        if k in ("secret", "json") or k in d.to_db_of
    )


def _json_out(write: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A JSON column's writer that also takes typed values (``Session.settings``) as the JSON they store."""
    return lambda value: (write or _identity)(json_value(value))


def _identity(value: Any) -> Any:
    return value


def json_value(value: Any) -> Any:
    """A JSON column's value as plain JSON: entities become objects (:class:`SessionSettings` only with the
    fields it was given, which is what it records), lists of them lists."""
    if isinstance(value, SessionSettings):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return [json_value(v) for v in value]
    return value


def _secret_in(value: SecretStr) -> str | None:
    return encrypt_key(value.get_secret_value())


_IDS: dict[str, Kind] = {"id": "uuid", "tenant_id": "uuid"}
_TIMES: dict[str, Kind] = {"create_time": "time", "update_time": "time"}

MESSAGE = Table("entity_message", Message, {
    "id": "uuid", "session_id": "uuid", "tenant_id": "uuid", "user_id": "uuid", "agent_id": "uuid", "seq": "int",
    "role": "text", "content": "text", "status": "text", "metadata": "json", "nul_escaped": "bool",
    "parent_message_id": "uuid", **_TIMES, "delta_ends": "json", "request_params": "json", "tool_calls": "json",
    "tool_call_id": "text", "is_error": "bool", "parts": "json", "compaction": "bool",
})  # fmt: skip
SESSION = Table("entity_session", Session, {
    **_IDS, "user_id": "uuid", "agent_id": "uuid", "title": "text", "metadata": "json", **_TIMES,
    "settings": "json", "settings_changes": "json",
})  # fmt: skip
CALL = Table("entity_api_call", LLMApiCall, {
    **_IDS, "session_id": "uuid", "user_id": "uuid", "agent_id": "uuid", "request_message_id": "uuid",
    "response_message_id": "uuid", "model_name": "text", "status": "text", "error_message": "text",
    "error_code": "text", "prompt_tokens": "int", "completion_tokens": "int", "total_tokens": "int",
    "prompt_tokens_details": "json", "completion_tokens_details": "json", "tokens_estimated": "bool",
    "price": "numeric", "price_details": "json", "latency_ms": "int", "time_to_first_token_ms": "int",
    "tokens_per_second": "float", "provider_response_id": "text", "create_time": "time", "trace_id": "text",
})  # fmt: skip
PROVIDER = Table("entity_provider", Provider, {
    **_IDS, "provider_name": "text", "provider_type": "text", "api_base": "text", "api_key": "secret",
    "enabled": "bool", **_TIMES,
}, " ORDER BY provider_name")  # fmt: skip
AGENT = Table("entity_agent", Agent, {
    **_IDS, "agent_code": "text", "agent_name": "text", "agent_order": "int", "agent_status": "bool",
    "context_limit": "int", "custom_params": "json", "max_completion_tokens": "int", "model_name": "text",
    "provider_id": "uuid", "response_format": "json", "system_prompt": "text", "temperature": "float",
    "stream": "bool", "thinking": "json", **_TIMES,
}, " ORDER BY agent_order, agent_code")  # fmt: skip
API_KEY = Table("entity_api_key", ApiKey, {
    **_IDS, "user_id": "uuid", "name": "text", "key_hash": "text", "key_hint": "text", "create_time": "time",
    "last_used_time": "time", "revoke_time": "time",
})  # fmt: skip
