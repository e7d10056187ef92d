"""The HTTP layer of ``mofa serve``: authentication, the body limit, SSE framing, typed dependencies and the
one mapping of errors to responses. The API packages build on it; it knows no route."""

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

__all__ = [
    "KEEPALIVE", "OPENAI_PREFIXES", "PUBLIC_PATHS", "ApiError", "AuthMiddleware", "BodyLimitMiddleware",
    "QuerySecretsFilter", "Registry", "SSEResponse", "ServeApp", "Services", "StoreDep", "Who", "api_of",
    "error_payload", "error_response", "event_frame", "install_access_log_filter", "install_error_handlers",
    "mask_query", "principal", "services", "sse", "status_of",
]
