"""The ``mofa`` command line: ``chat``, ``sessions``, ``providers``, ``agents``, ``db``, ``models`` and ``usage``.

The app is imported on first use, inside :func:`main`: importing typer, rich and the stores takes a
moment, and a Ctrl-C then must end the command with one line, not an import traceback."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (``mofa``)."""
    try:
        from ._app import main as run

        run()
    except KeyboardInterrupt:  # before or after a command's own handling (start-up, argument parsing)
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None


def __getattr__(name: str) -> Any:
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
