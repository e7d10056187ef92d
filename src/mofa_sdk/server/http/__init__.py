"""The HTTP layer of ``mofa serve``: authentication, the body limit, SSE framing, typed dependencies and the
one mapping of errors to responses. The API packages build on it; it knows no route."""

from typing import TYPE_CHECKING, Any

from ._access_log import QuerySecretsFilter, install_access_log_filter, mask_query
from ._auth import PUBLIC_PATHS, AuthMiddleware, Who, principal
from ._deps import Registry, ServeApp, Services, StoreDep, services
from ._errors import (
    OPENAI_PREFIXES,
    ApiError,
    api_of,
    error_payload,
    error_response,
    install_error_handlers,
    status_of,
)
from ._limits import BodyLimitMiddleware
from ._sse import KEEPALIVE, SSEResponse, event_frame, sse
from ._tracing import TracingMiddleware, start_otel_sdk

if TYPE_CHECKING:
    from ._metrics import METRICS_PATH, MetricsMiddleware, ServiceMetrics

if TYPE_CHECKING:
    from ._protocol import GuardedH11Protocol

__all__ = [
    "KEEPALIVE",
    "METRICS_PATH",
    "OPENAI_PREFIXES",
    "PUBLIC_PATHS",
    "ApiError",
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "GuardedH11Protocol",
    "MetricsMiddleware",
    "QuerySecretsFilter",
    "Registry",
    "SSEResponse",
    "ServeApp",
    "ServiceMetrics",
    "Services",
    "StoreDep",
    "TracingMiddleware",
    "Who",
    "api_of",
    "error_payload",
    "error_response",
    "event_frame",
    "install_access_log_filter",
    "install_error_handlers",
    "mask_query",
    "principal",
    "services",
    "sse",
    "start_otel_sdk",
    "status_of",
]

_METRICS = {"METRICS_PATH", "MetricsMiddleware", "ServiceMetrics"}


def __getattr__(name: str) -> Any:
    # prometheus_client (the metrics extra) loads only when metrics are turned on; uvicorn's protocol class
    # only where uvicorn runs the app (``mofa serve``), not by the app itself
    if name in _METRICS:
        from . import _metrics

        return getattr(_metrics, name)
    if name == "GuardedH11Protocol":
        from ._protocol import GuardedH11Protocol

        return GuardedH11Protocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
