"""SIGTERM and SIGINT reach the run registry first, then the server that runs the app (uvicorn).

uvicorn, told to stop, first waits for open connections (the streams of runs) and only then runs the app's
shutdown: runs would go on until its graceful timeout and their followers be cut without a terminal event.
The registry is told at the signal instead (``begin_shutdown``), and the server's own handler runs after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

__all__ = ["forwarding_termination"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def forwarding_termination(callback: Callable[[], None]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT call ``callback`` (on the running loop) before the handler
    installed so far. Only a handler installed by the server is chained: outside one (the default action, or
    not the main thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    chained: dict[signal.Signals, Any] = {}
    for sig in _SIGNALS:
        previous = signal.getsignal(sig)
        if not callable(previous) or previous is signal.default_int_handler:
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(callback)
            previous(signum, frame)

        chained[sig] = previous
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in chained.items():
            signal.signal(sig, previous)
