"""The ``mofa`` command line: ``chat``, ``sessions``, ``providers``, ``agents``, ``db`` and ``usage``."""

from ._app import app, main

__all__ = ["app", "main"]
