"""``GET /metrics``: the service's numbers in the Prometheus text format (``mofa serve --metrics``).

One registry per app (never prometheus_client's global one: two apps in one process, as tests make, must
not share counters). Requests are counted by route template, not by path, so that ids do not become label
values. What a turn measured comes from an event handler every run carries (:class:`TurnMetrics`); what is
a level (runs, followers, pool connections, the bus's backlog) is read when scraped.

The GenAI names follow OpenTelemetry's conventions where they exist (``gen_ai.client.token.usage``,
``gen_ai.client.operation.duration``); the rest are ``mofa_*``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...llm import EventHandler, ToolStep, Turn, TurnResult
from ._deps import Services
from ._errors import error_response

__all__ = ["METRICS_PATH", "MetricsMiddleware", "ServiceMetrics", "TurnMetrics"]

METRICS_PATH = "/metrics"

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


class ServiceMetrics:
    """The metrics of one app."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mofa_http_requests", "HTTP requests answered, by method, route and status",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("mofa_http_request_duration_seconds",
                                         "Time from request to the end of the response (an SSE stream's whole "
                                         "length)", ["method", "route"], buckets=_SECONDS, registry=r)
        self.followers = _Level()
        self.turns = Counter("mofa_turns", "Turns ended, by status (complete, error, cancelled)", ["status"],
                             registry=r)
        self.turn_seconds = Histogram("mofa_turn_duration_seconds", "Turn latency: the last model call's start "
                                      "to its end", ["model"], buckets=_SECONDS, registry=r)
        self.first_token_seconds = Histogram("mofa_turn_time_to_first_token_seconds",
                                             "Time to the first token of a model call", ["model"],
                                             buckets=_SECONDS, registry=r)
        self.tokens = Counter("mofa_tokens", "Tokens by model and type (input, output)", ["model", "type"],
                              registry=r)
        self.provider_errors = Counter("mofa_provider_errors", "Model calls that failed, by error code",
                                       ["code"], registry=r)
        self.token_usage = Histogram("gen_ai_client_token_usage", "GenAI: tokens per model call",
                                     ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model",
                                      "gen_ai_token_type"], buckets=_TOKENS, registry=r)
        self.operation_seconds = Histogram("gen_ai_client_operation_duration_seconds",
                                           "GenAI: duration of a model call",
                                           ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
                                           buckets=_SECONDS, registry=r)
        r.register(_Levels(services, self.followers))
        self.handler = TurnMetrics(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Level:
    """A number read when scraped (a gauge the middleware moves)."""

    def __init__(self) -> None:
        self.value = 0


class _Levels(Collector):
    """What is read at scrape time: live runs, SSE followers, the database pool, the bus's backlog."""

    def __init__(self, services: Callable[[], Services | None], followers: _Level) -> None:
        self._services = services
        self._followers = followers

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families below depend on the store

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("mofa_followers_active", "Event streams (SSE) being sent now",
                                value=self._followers.value)
        services = self._services()
        if services is None:
            return
        registry = services.registry
        live = sum(1 for run in list(registry.runs.values()) if run.terminal is None)
        yield GaugeMetricFamily("mofa_runs_active", "Runs streaming in this process", value=live)
        yield GaugeMetricFamily("mofa_unsaved_replies", "Replies whose final write failed, kept and retried",
                                value=sum(len(p.pending) for p in registry.unsaved))
        yield GaugeMetricFamily("mofa_bus_backlog", "NOTIFY messages waiting to be sent to other processes "
                                "(the bus's lag)", value=registry.bus.backlog)
        stats = getattr(services.store, "pool_stats", None)
        if callable(stats):
            pool = stats()
            family = GaugeMetricFamily("mofa_db_pool_connections", "PostgreSQL pool connections, by state",
                                       labels=["state"])
            size = pool.get("pool_size", 0)
            available = pool.get("pool_available", 0)
            family.add_metric(["open"], size)
            family.add_metric(["in_use"], max(0, size - available))
            family.add_metric(["idle"], available)
            family.add_metric(["max"], pool.get("pool_max", 0))
            yield family
            yield GaugeMetricFamily("mofa_db_pool_requests_waiting", "Requests waiting for a pooled connection",
                                    value=pool.get("requests_waiting", 0))


class TurnMetrics(EventHandler):
    """Every run's model calls and turns, counted (it only reads what the turn measured)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._m = metrics

    async def on_tool_calls(self, turn: Turn, step: ToolStep) -> None:
        self._call(turn, step.result)

    async def after_reply(self, turn: Turn, result: TurnResult) -> None:
        self._end(turn, result)

    async def on_error(self, turn: Turn, result: TurnResult) -> None:
        self._end(turn, result)

    async def on_cancel(self, turn: Turn, result: TurnResult) -> None:
        self._end(turn, result)

    def _end(self, turn: Turn, result: TurnResult) -> None:
        m = self._m
        m.turns.labels(result.status).inc()
        model = result.model or turn.model
        if result.latency_ms is not None:
            m.turn_seconds.labels(model).observe(result.latency_ms / 1000)
        self._call(turn, result)

    def _call(self, turn: Turn, result: TurnResult) -> None:
        m = self._m
        model = result.model or turn.model
        error = None
        if result.status == "error" and result.error is not None:
            code = getattr(result.error, "code", None)
            error = code if isinstance(code, str) and code else type(result.error).__name__
            m.provider_errors.labels(error).inc()
        if result.time_to_first_token_ms is not None:
            m.first_token_seconds.labels(model).observe(result.time_to_first_token_ms / 1000)
        if result.latency_ms is not None:
            m.operation_seconds.labels("chat", turn.model, error or "").observe(result.latency_ms / 1000)
        usage = result.usage
        if usage is not None:
            for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
                m.tokens.labels(model, kind).inc(count)
                m.token_usage.labels("chat", turn.model, model, kind).observe(count)


class MetricsMiddleware:
    """Counts every request (401s too) and answers ``GET /metrics`` itself, before authentication: the
    endpoint needs no tenant key; ``token`` (when set) is the bearer token it asks for instead."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, token: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH:
            await self._scrape(scope, receive, send)
            return
        import time

        m = self.metrics
        status = 500  # a request that ends without a response start crashed
        streaming = False
        t0 = time.monotonic()

        async def sending(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    streaming = True
                    m.followers.value += 1
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if streaming:
                m.followers.value -= 1
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            m.requests.labels(scope["method"], route, str(status)).inc()
            m.request_seconds.labels(scope["method"], route).observe(time.monotonic() - t0)

    async def _scrape(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is not None:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                await error_response(METRICS_PATH, 401, "unauthorized",
                                     "/metrics needs the metrics token: Authorization: Bearer <token>",
                                     headers={"WWW-Authenticate": 'Bearer realm="mofa-metrics"'},
                                     )(scope, receive, send)
                return
        if scope["method"] not in ("GET", "HEAD"):
            await error_response(METRICS_PATH, 405, "method_not_allowed", "/metrics answers GET only",
                                 headers={"Allow": "GET, HEAD"})(scope, receive, send)
            return
        body = self.metrics.render()
        headers: list[Any] = [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                              (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
