"""Transactions of the stores that serialize writes in this process (SQLite, in-memory).

The transactions open in an asyncio context are kept in a context variable: tasks started inside one
inherit it, so their reads and writes join it instead of waiting for the lock it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from ..errors import ConfigError

__all__ = ["LocalTransaction", "current", "entered", "joins"]


class LocalTransaction:
    """What ``transaction()`` yields on these stores; pass it as ``tx=``."""

    def __init__(self, store: object) -> None:
        self.store = store
        self.active = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'active' if self.active else 'finished'}>"


_ACTIVE: ContextVar[tuple[LocalTransaction, ...]] = ContextVar("mofa_local_tx", default=())
_T = TypeVar("_T", bound=LocalTransaction)


def current(store: object, kind: type[_T]) -> _T | None:
    """The transaction of ``store`` open in this context, if any."""
    for tx in _ACTIVE.get():
        if tx.store is store and tx.active and isinstance(tx, kind):
            return tx
    return None


@contextmanager
def entered(tx: _T) -> Iterator[_T]:
    token = _ACTIVE.set((*_ACTIVE.get(), tx))
    try:
        yield tx
    finally:
        tx.active = False
        _ACTIVE.reset(token)


def joins(store: object, tx: Any, kind: type[LocalTransaction]) -> bool | None:
    """True when a write given ``tx`` runs inside an open transaction of ``store`` (and so must not wait for
    its lock), False when it runs alone, None when ``tx`` is not one of this store's transactions."""
    if tx is None:
        return current(store, kind) is not None
    if isinstance(tx, kind) and tx.store is store:
        if not tx.active:
            raise ConfigError("tx= is a transaction that has already finished")
        return True
    return None
