"""Typed dependencies of the routes: the service's parts (store, run registry) and who a request acts as.

The parts are made by the app's lifespan and held by the app itself (:class:`ServeApp`), typed; a route
names what it needs in its signature (``registry: Registry``), never reads a loose ``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from ...errors import ServiceUnavailableError
from ...persistence import Store
from ..runs import RunRegistry

__all__ = ["Registry", "ServeApp", "Services", "StoreDep", "services"]


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    registry: RunRegistry


class ServeApp(FastAPI):
    """The FastAPI app of ``mofa serve``: its services while its lifespan runs, else None."""

    services: Services | None = None


def services(request: Request) -> Services:
    app = request.app  # the innermost app: this one, also when it is mounted in another
    found = app.services if isinstance(app, ServeApp) else None
    if found is None:
        raise ServiceUnavailableError("the service is not started (its lifespan has not run)")
    return found


def _store(s: Annotated[Services, Depends(services)]) -> Store:
    return s.store


def _registry(s: Annotated[Services, Depends(services)]) -> RunRegistry:
    return s.registry


#: the store of the service
StoreDep = Annotated[Store, Depends(_store)]
#: the run registry of the service (its store is ``registry.store``)
Registry = Annotated[RunRegistry, Depends(_registry)]
