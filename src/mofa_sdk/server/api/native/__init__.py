"""The native API of ``mofa serve``: sessions, runs and their events, usage, agents, health."""

from .routes import router

__all__ = ["router"]
