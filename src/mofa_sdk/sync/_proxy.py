"""``Blocking``: any object of the async API, seen through the portal.

Written once for every type: a method whose call returns an awaitable is run to its result, an async
iterator becomes a plain iterator, an async context manager a plain one, and results that have async
methods of their own come back wrapped too. Arguments that are wrapped objects are unwrapped, so wrapped
stores and contexts can be handed back to the API.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from ._portal import run

__all__ = ["Blocking", "blocking", "unwrap"]

#: seen blocking, a builder's ``build_async`` is plain ``build`` and an agent's ``aclose`` plain ``close``
_RENAMED = {"build": "build_async", "close": "aclose"}


_async_types: dict[type, bool] = {}


def _is_async_type(cls: type) -> bool:
    """Whether instances of ``cls`` have anything to await: those are the ones worth wrapping."""
    known = _async_types.get(cls)
    if known is None:
        known = cls.__module__.startswith("mofa_sdk.") and any(
            inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr)
            for attr in (_function(inspect.getattr_static(cls, name, None)) for name in dir(cls))
        )
        _async_types[cls] = known
    return known


def _function(attr: Any) -> Any:
    return attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr


def unwrap(value: Any) -> Any:
    return object.__getattribute__(value, "_target") if isinstance(value, Blocking) else value


def blocking(value: Any) -> Any:
    """``value`` seen through the portal: awaitables resolved, async objects wrapped, the rest as is."""
    if inspect.iscoroutine(value):
        value = run(value)
    elif inspect.isawaitable(value):
        async def wait() -> Any:
            return await value

        value = run(wait())
    if isinstance(value, Blocking):
        return value
    if isinstance(value, type) and _is_async_type(value):
        return Blocking(value)
    if _is_async_type(type(value)) or hasattr(value, "__aiter__") or hasattr(value, "__aenter__"):
        return Blocking(value)
    return value


class Blocking:
    """A blocking view of an async object (an agent, a builder, a store, a context, a stream)."""

    __slots__ = ("_iterator", "_target")

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_iterator", None)

    def __repr__(self) -> str:
        return f"Blocking({unwrap(self)!r})"

    def __getattr__(self, name: str) -> Any:
        target = unwrap(self)
        if name in _RENAMED and hasattr(target, _RENAMED[name]):
            name = _RENAMED[name]
        value = getattr(target, name)
        if not callable(value) or isinstance(value, type):
            return blocking(value)

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*(unwrap(a) for a in args), **{k: unwrap(v) for k, v in kwargs.items()})
            return self if result is target else blocking(result)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(unwrap(self), name, unwrap(value))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return blocking(unwrap(self)(*(unwrap(a) for a in args), **{k: unwrap(v) for k, v in kwargs.items()}))

    # -- iteration: a stream of text deltas ---------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        source: AsyncIterator[Any] = unwrap(self).__aiter__()
        try:
            while True:
                try:
                    yield run(_next(source))
                except StopAsyncIteration:
                    return
        finally:  # the consumer stopped early (break, an exception): close the turn as async code would
            close = getattr(source, "aclose", None)
            if close is not None:
                with contextlib.suppress(RuntimeError):
                    run(close())

    # -- context managers: ``with store.transaction() as tx``, ``with agent:`` -----------------------
    def __enter__(self) -> Any:
        entered = run(_enter(unwrap(self)))
        return self if entered is unwrap(self) else blocking(entered)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> Any:
        return run(unwrap(self).__aexit__(et, ev, tb))


async def _next(source: AsyncIterator[Any]) -> Any:
    return await source.__anext__()


async def _enter(target: Any) -> Any:
    return await target.__aenter__()
