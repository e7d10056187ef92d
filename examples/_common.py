"""Shared by the examples: read lines from stdin without blocking the event loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator


async def user_lines(prompt: str = "> ") -> AsyncIterator[str]:
    """Lines typed (or piped) on stdin; ``quit`` or end of input stops."""
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print(prompt, end="", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        text = line.strip()
        if text == "quit":
            return
        if text:
            yield text
