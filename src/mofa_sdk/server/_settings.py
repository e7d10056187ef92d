"""Everything ``mofa serve`` runs with, from four places: command-line flags > environment > a TOML file >
defaults. Each setting has one key (``section.name`` in the file), one environment variable, and at most one
flag; a wrong value is an error naming the key and where the value came from.

The file is ``--config PATH``, else ``MOFA_CONFIG``, else ``mofa.toml`` in the user config folder
(``~/.config/mofa/mofa.toml`` on Linux) when it exists.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ._config import ServeConfig

__all__ = [
    "CONFIG_FILE_ENV",
    "KEYS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "Key",
    "ServeSettings",
    "default_config_path",
    "load_settings",
]

CONFIG_FILE_ENV = "MOFA_CONFIG"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")

Kind = Literal["str", "int", "float", "bool", "int?", "level", "format"]
Source = Literal["flag", "env", "file", "default"]


@dataclass(frozen=True)
class Key:
    """One setting: its file key, where it lands (a ``ServeConfig`` field, or the process's own), its type."""

    name: str
    target: str
    kind: Kind
    help: str
    #: hidden in ``mofa config show`` (a password, a token)
    secret: bool = False
    env_name: str | None = None

    @property
    def env(self) -> str:
        return self.env_name or "MOFA_" + self.name.replace(".", "_").upper()


KEYS: tuple[Key, ...] = (
    Key("database.url", "database_url", "str", "database URL; default: the SQLite file of `mofa chat`",
        secret=True, env_name="DATABASE_URL"),
    Key("database.pool_size", "pool_size", "int", "PostgreSQL connections per worker process"),
    Key("database.row_level_security", "row_level_security", "bool", "set the tenant in the database session"),
    Key("database.streaming_lease_seconds", "streaming_lease_seconds", "float",
        "a reply without a checkpoint this long reads `interrupted`"),
    Key("server.host", "host", "str", "address to listen on"),
    Key("server.port", "port", "int", "port to listen on"),
    Key("server.workers", "workers", "int", "worker processes (PostgreSQL only when > 1)"),
    Key("server.max_body_bytes", "max_body_bytes", "int", "refuse request bodies larger than this (413)"),
    Key("server.keepalive_seconds", "keepalive_seconds", "float", "an SSE comment at least this often"),
    Key("server.header_timeout_seconds", "header_timeout_seconds", "float",
        "a request's line and headers must arrive within this long, else 408"),
    Key("server.body_timeout_seconds", "body_timeout_seconds", "float",
        "a request's body must arrive within this long of its headers, else 408"),
    Key("server.max_connections", "max_connections", "int", "open connections per worker; one more gets a 503"),
    Key("server.thread_history", "thread_history", "bool",
        "continue the stored session a stateless request's resent history matches (Chat Completions, Responses)"),
    Key("server.shutdown_grace_seconds", "shutdown_grace_seconds", "float",
        "on shutdown, running replies get this long before they are cancelled"),
    Key("runs.max_reply_chars", "max_reply_chars", "int?", "a reply is cut at this many characters (none: no cap)"),
    Key("runs.checkpoint_interval", "checkpoint_interval", "float", "seconds between checkpoints of a reply"),
    Key("runs.heartbeat_seconds", "heartbeat_seconds", "float", "how often a run's owner says it is alive"),
    Key("runs.owner_timeout_seconds", "owner_timeout_seconds", "float",
        "a follower hearing nothing this long re-reads the run's row"),
    Key("runs.probe_seconds", "probe_seconds", "float", "how long to wait for another process's run"),
    Key("runs.finished_run_seconds", "finished_run_seconds", "float", "finished runs stay in memory this long"),
    Key("runs.unsaved_retry_seconds", "unsaved_retry_seconds", "float", "retry a failed final write this often"),
    Key("log.level", "log_level", "level", "critical, error, warning, info or debug"),
    Key("log.format", "log_format", "format", "text, or json (one JSON object a line)"),
    Key("otel.enabled", "otel", "bool", "OpenTelemetry traces through OTLP (OTEL_* variables configure it)"),
    Key("otel.capture_content", "otel_capture_content", "bool", "prompt and reply text on the LLM spans"),
    Key("metrics.enabled", "metrics", "bool", "serve GET /metrics (Prometheus)"),
    Key("metrics.token", "metrics_token", "str", "bearer token /metrics asks for (none: no token)", secret=True),
)
_BY_NAME = {k.name: k for k in KEYS}
_CONFIG_FIELDS = {f.name for f in fields(ServeConfig)}


@dataclass(frozen=True)
class ServeSettings:
    """What ``mofa serve`` runs with: the app's :class:`ServeConfig` and the process's own settings."""

    config: ServeConfig = field(default_factory=ServeConfig)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    log_format: str = "text"
    #: the config file read, if any
    path: Path | None = None
    #: where each key's value came from
    sources: Mapping[str, Source] = field(default_factory=dict)

    def value(self, key: Key) -> Any:
        return getattr(self.config, key.target) if key.target in _CONFIG_FIELDS else getattr(self, key.target)


def default_config_path() -> Path:
    """``mofa.toml`` in the user config folder (``~/.config/mofa`` on Linux)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("mofa")) / "mofa.toml"


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeSettings:
    """The effective settings. ``flags``: by key name, what the command line gave (None values: not given);
    ``path``: the config file (None: ``MOFA_CONFIG``, else the default location if it exists)."""
    env = os.environ if environ is None else environ
    file_path, required = _file_path(path, env)
    from_file = _read_file(file_path, required) if file_path is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    where: dict[str, str] = {}
    for key in KEYS:
        flag = (flags or {}).get(key.name)
        raw_env = env.get(key.env)
        if flag is not None:
            values[key.name], sources[key.name], where[key.name] = flag, "flag", "the command line"
        elif raw_env is not None and raw_env.strip() != "":
            values[key.name] = _parse_env(key, raw_env)
            sources[key.name], where[key.name] = "env", f"environment variable {key.env}"
        elif key.name in from_file:
            values[key.name], sources[key.name] = from_file[key.name], "file"
            where[key.name] = f"{file_path}"
        else:
            sources[key.name] = "default"
    for name, value in values.items():
        _check_type(_BY_NAME[name], value, where[name])
        if value == "none":  # the file's way of saying "no limit" (TOML has no null)
            values[name] = None
    config_args = {_BY_NAME[n].target: v for n, v in values.items() if _BY_NAME[n].target in _CONFIG_FIELDS}
    own = {_BY_NAME[n].target: v for n, v in values.items() if _BY_NAME[n].target not in _CONFIG_FIELDS}
    try:
        config = ServeConfig(**config_args)
    except ConfigError as exc:
        raise ConfigError(_name_the_key(str(exc), where)) from None
    settings = ServeSettings(config=config, path=file_path if from_file or required else None, sources=sources)
    settings = replace(settings, **own)
    _check_process(settings, where)
    return settings


def _file_path(path: str | Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The file to read and whether it must exist (it was named)."""
    if path is not None:
        return Path(path).expanduser(), True
    named = env.get(CONFIG_FILE_ENV, "").strip()
    if named:
        return Path(named).expanduser(), True
    default = default_config_path()
    return (default, False) if default.is_file() else (None, False)


def _read_file(path: Path, required: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"no such config file: {path}") from None
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    out: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: `{section}` must be a table ([{section}]), not a value; "
                              f"the sections are {', '.join(_sections())}")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in _BY_NAME:
                raise ConfigError(f"{path}: unknown setting `{key}`; the settings are {', '.join(_BY_NAME)}")
            out[key] = value
    return out


def _sections() -> list[str]:
    return list(dict.fromkeys(k.name.partition(".")[0] for k in KEYS))


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_env(key: Key, raw: str) -> Any:
    text = raw.strip()
    what = f"environment variable {key.env} (setting `{key.name}`)"
    if key.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{what} must be true or false, got {raw!r}")
    if key.kind in ("int", "int?"):
        if key.kind == "int?" and text.lower() in ("none", "off"):
            return None
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{what} must be an integer, got {raw!r}") from None
    if key.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{what} must be a number, got {raw!r}") from None
    return text


_CHECKS: dict[Kind, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "int?": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)) or v == "none",
             'an integer or "none"'),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "level": (lambda v: isinstance(v, str) and v.lower() in LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS)),
    "format": (lambda v: isinstance(v, str) and v.lower() in LOG_FORMATS, "one of " + ", ".join(LOG_FORMATS)),
}


def _check_type(key: Key, value: Any, where: str) -> None:
    ok, expected = _CHECKS[key.kind]
    if not ok(value):
        shown = "***" if key.secret else repr(value)
        raise ConfigError(f"setting `{key.name}` (from {where}) must be {expected}, got {shown}")


def _name_the_key(message: str, where: Mapping[str, str]) -> str:
    """``ServeConfig``'s message names its field: name the setting and where its value came from."""
    for key in KEYS:
        if message.startswith(key.target + " ") or f" {key.target} " in message:
            source = where.get(key.name, "the defaults")
            return f"setting `{key.name}` (from {source}): {message}"
    return f"invalid settings: {message}"


def _check_process(s: ServeSettings, where: Mapping[str, str]) -> None:
    def bad(name: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"setting `{name}` (from {where.get(name, 'the defaults')}) must be {expected}, "
                           f"got {value!r}")

    if not 1 <= s.port <= 65535:
        raise bad("server.port", "a port from 1 to 65535", s.port)
    if not 1 <= s.workers <= 64:
        raise bad("server.workers", "from 1 to 64", s.workers)
    object.__setattr__(s, "log_level", s.log_level.lower())
    object.__setattr__(s, "log_format", s.log_format.lower())
