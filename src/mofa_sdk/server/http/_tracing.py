"""A span per HTTP request (the parent of the turn it starts), continuing an incoming ``traceparent``; and
the one place that starts the OpenTelemetry SDK (``mofa serve --otel``).

Without an SDK the middleware passes requests straight through (one check per request). The SDK is
configured by the standard ``OTEL_*`` variables: ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``), ``OTEL_SERVICE_NAME``
(default ``mofa-serve``), ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` …
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...errors import ConfigError
from ...llm import tracing_enabled

__all__ = ["TracingMiddleware", "start_otel_sdk"]

log = logging.getLogger("mofa_sdk.server")
_started = False


class TracingMiddleware:
    """A ``SERVER`` span around each HTTP request, named ``METHOD /route/{template}`` once routed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing_enabled():
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = propagate.extract(carrier)
        method = scope["method"]
        status = 0
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": scope["path"],
                                      "url.scheme": scope.get("scheme", "http")}

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        tracer = trace.get_tracer("mofa_sdk.server")  # per request: a provider set later is used
        with tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER,
                                           attributes=attributes) as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                        span.set_attribute("error.type", str(status))


def start_otel_sdk() -> bool:
    """Install the SDK's tracer provider with an OTLP exporter, once per process; False when one was set
    already (an application that configured its own keeps it)."""
    global _started
    if _started or tracing_enabled():
        return False
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            f"--otel needs the otel extra: pip install 'mofa-sdk[otel]' ({exc.name} is missing)"
        ) from None
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exporter: Any
    try:
        if protocol.strip() == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            exporter = GrpcExporter()
        elif protocol.strip() in ("http/protobuf", ""):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            exporter = HttpExporter()
        else:
            raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, got {protocol!r}")
    except ImportError as exc:
        raise ConfigError(
            f"--otel needs the otel extra: pip install 'mofa-sdk[otel]' ({exc.name} is missing)"
        ) from None
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default name
    resource = Resource.create({"service.name": "mofa-serve"}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _started = True
    log.info("OpenTelemetry traces are exported over OTLP (%s)", protocol)
    return True
