"""``mofa serve``: the library over HTTP. Runs are owned by the service, not by requests; their events
are numbered, replayed from the database and followed live (in-process, or across processes through
PostgreSQL LISTEN/NOTIFY). Needs the ``serve`` extra (FastAPI and uvicorn)."""

from ._app import create_app
from ._config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
