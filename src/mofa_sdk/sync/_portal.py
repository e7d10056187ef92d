"""One event loop on a daemon thread per process, which the blocking facade runs every coroutine on.

Running everything on one loop of our own (rather than ``asyncio.run`` per call) keeps pools, SQLite
connections and locks bound to a single loop across calls, and works where the caller's thread already
runs a loop (Jupyter): the caller only blocks on a future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import AgentError

__all__ = ["run"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _portal() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            # a daemon: a script that never closes what it opened still exits (what was saved is committed)
            thread = threading.Thread(target=serve, name="mofa-sync-portal", daemon=True)
            thread.start()
            ready.wait()
            _loop, _thread = loop, thread
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for it; exceptions come back as they were raised.

    Each calling thread keeps one ``contextvars.Context`` across its calls, so what a call leaves in context
    variables (an open ``store.transaction()``) is there for the next one, as in one async task. If the wait
    is interrupted (Ctrl-C), the task is cancelled, as ``asyncio.run`` would cancel it."""
    loop = _portal()
    if threading.current_thread() is _thread:
        coro.close()
        raise AgentError("the blocking facade was called from inside its own event loop (an async hook?): "
                         "await the async API there instead")
    ctx = getattr(_caller, "context", None)
    if ctx is None:
        ctx = _caller.context = contextvars.Context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro, context=ctx)
        tasks.append(task)

        def finish(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if not done.done():
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
            with contextlib.suppress(BaseException):
                done.result(timeout=_CANCEL_WAIT_SECONDS)
        raise


#: how long an interrupted call waits for its task to finish cancelling (a reply saved as cancelled)
_CANCEL_WAIT_SECONDS = 5.0
_caller = threading.local()
