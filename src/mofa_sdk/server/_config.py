"""The service's settings, in one frozen value (what ``create_app`` takes and ``mofa serve`` fills)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["ServeConfig"]


@dataclass(frozen=True)
class ServeConfig:
    """``database_url``: None means ``DATABASE_URL``, else the SQLite default (as every command).
    ``row_level_security``: connect PostgreSQL with the store's row-level security on, so every query of a
    request also runs with the request's tenant set in the database session."""

    #: kept out of the repr: a URL may hold a password
    database_url: str | None = field(default=None, repr=False)
    row_level_security: bool = False
    #: PostgreSQL connections of each process (every run checkpoints through them)
    pool_size: int = 20
    #: request bodies larger than this are refused with 413 before they are read whole
    max_body_bytes: int = 1_000_000
    #: an SSE comment at least this often, so proxies and clients see the stream is alive
    keepalive_seconds: float = 15.0
    #: how often a streaming reply is checkpointed to the database (the plugin's checkpoint_interval)
    checkpoint_interval: float = 1.0
    #: how often the owner of a run followed from another process says it is alive
    heartbeat_seconds: float = 1.0
    #: a follower that hears nothing from a run's owner this long re-reads the run's row, then gives up on it
    owner_timeout_seconds: float = 4.0
    #: how long a process waits for the owner of a run it does not hold to answer
    probe_seconds: float = 1.5
    #: finished runs stay in memory this long (the database has them anyway; this only saves reads)
    finished_run_seconds: float = 60.0
    #: a reply left ``streaming`` this long without a checkpoint reads ``interrupted`` (the store's lease)
    streaming_lease_seconds: float = 5.0
    #: a reply whose final write failed is kept in memory and written again this often until it lands
    unsaved_retry_seconds: float = 2.0
    #: on shutdown, running replies get this long to finish before they are cancelled (and saved as such)
    shutdown_grace_seconds: float = 10.0
    #: a reply is cut (saved as ``error``, code ``reply_too_large``) at this many characters; None: no cap
    max_reply_chars: int | None = 1_000_000
    #: a request's line and headers must arrive within this long of its connection (or of the previous
    #: response on a kept-alive one), else 408 and the connection is closed (``mofa serve``'s protocol)
    header_timeout_seconds: float = 10.0
    #: a request's body must arrive within this long of its headers, else 408
    body_timeout_seconds: float = 30.0
    #: open client connections per process (capped below its file-descriptor limit); one more gets a 503
    max_connections: int = 1000
    #: a Chat Completions (or Responses ``input`` list) request whose earlier messages equal a stored session
    #: of the same user continues it, saving only what is new (``--no-thread-history`` turns it off)
    thread_history: bool = True
    #: OpenTelemetry: start the SDK at start-up (OTLP exporter, configured by the ``OTEL_*`` variables)
    otel: bool = False
    #: record prompt and reply text on the LLM spans (off by default: they may hold personal data)
    otel_capture_content: bool = False
    #: serve ``GET /metrics`` (Prometheus text format) on the service's port
    metrics: bool = False
    #: when set, ``/metrics`` needs ``Authorization: Bearer <token>``; kept out of the repr
    metrics_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.pool_size, int) or not 1 <= self.pool_size <= 1000:
            raise ConfigError(f"pool_size must be an integer from 1 to 1000, got {self.pool_size!r}")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be an integer >= 1024, got {self.max_body_bytes!r}")
        if self.max_reply_chars is not None and (not isinstance(self.max_reply_chars, int)
                                                 or self.max_reply_chars < 1):
            raise ConfigError(f"max_reply_chars must be a positive integer or None, got {self.max_reply_chars!r}")
        for name in (
            "keepalive_seconds", "checkpoint_interval", "heartbeat_seconds", "owner_timeout_seconds",
            "probe_seconds", "finished_run_seconds", "streaming_lease_seconds", "unsaved_retry_seconds",
            "header_timeout_seconds", "body_timeout_seconds",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
        if not isinstance(self.max_connections, int) or self.max_connections < 1:
            raise ConfigError(f"max_connections must be a positive integer, got {self.max_connections!r}")
        for name in ("row_level_security", "otel", "otel_capture_content", "metrics"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.metrics_token is not None and (not isinstance(self.metrics_token, str)
                                               or len(self.metrics_token.strip()) < 16):
            raise ConfigError("metrics_token must be a string of at least 16 characters (it guards /metrics)")
        if self.owner_timeout_seconds <= self.heartbeat_seconds:
            raise ConfigError("owner_timeout_seconds must be longer than heartbeat_seconds")
