"""The settings of ``mofa serve``: flags > environment > config file > defaults; every key has an environment
variable; a wrong value is an error naming the key and where it came from; ``mofa config show`` hides
secrets and prints a file that loads back to the same settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mofa_sdk.cli import app
from mofa_sdk.errors import ConfigError
from mofa_sdk.server import KEYS, ServeConfig, load_settings


def run_cli(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, args, env={"DATABASE_URL": None, "MOFA_CONFIG": None, **(env or {})})

FILE = """
[database]
url = "postgresql://mofa:file-password@db:5432/mofa"
pool_size = 7

[server]
port = 8100
workers = 2
keepalive_seconds = 5

[runs]
max_reply_chars = "none"

[log]
level = "DEBUG"
format = "json"

[metrics]
enabled = true
token = "a-metrics-token-of-32-characters"
"""


def _file(tmp_path: Path, text: str = FILE) -> Path:
    path = tmp_path / "mofa.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(path=_file(tmp_path, ""), environ={})
    assert s.config == ServeConfig() and (s.host, s.port, s.workers, s.log_level) == ("127.0.0.1", 8000, 1, "info")
    assert set(s.sources.values()) == {"default"}


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = _file(tmp_path)
    s = load_settings(path=path, environ={})
    assert s.config.database_url == "postgresql://mofa:file-password@db:5432/mofa"
    assert (s.config.pool_size, s.port, s.workers, s.config.keepalive_seconds) == (7, 8100, 2, 5)
    assert s.config.max_reply_chars is None and s.config.metrics and (s.log_level, s.log_format) == ("debug", "json")
    assert s.sources["database.pool_size"] == "file" and s.sources["server.host"] == "default"
    env = {"MOFA_DATABASE_POOL_SIZE": "9", "MOFA_SERVER_PORT": "8200", "DATABASE_URL": "sqlite:///env.db",
           "MOFA_METRICS_ENABLED": "false"}
    s = load_settings(path=path, environ=env)
    assert (s.config.pool_size, s.port, s.config.database_url, s.config.metrics) == (9, 8200, "sqlite:///env.db",
                                                                                    False)
    assert s.sources["server.port"] == "env" and s.sources["server.workers"] == "file"
    s = load_settings({"server.port": 8300, "database.pool_size": None}, path=path, environ=env)
    assert (s.port, s.config.pool_size) == (8300, 9)  # a flag not given (None) does not count
    assert s.sources["server.port"] == "flag"


def test_the_file_comes_from_MOFA_CONFIG(tmp_path: Path) -> None:
    path = _file(tmp_path)
    s = load_settings(environ={"MOFA_CONFIG": str(path)})
    assert s.path == path and s.port == 8100
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(environ={"MOFA_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("[server]\nprot = 1\n", {}, r"unknown setting `server.prot`"),
    ("[server]\nport = \"eighty\"\n", {}, r"setting `server.port` \(from .*mofa.toml\) must be an integer"),
    ("[database]\npool_size = 0\n", {}, r"setting `database.pool_size` \(from .*mofa.toml\): pool_size must be"),
    ("", {"MOFA_DATABASE_POOL_SIZE": "lots"}, r"MOFA_DATABASE_POOL_SIZE \(setting `database.pool_size`\) must be an "
                                               "integer"),
    ("", {"MOFA_SERVER_PORT": "70000"}, r"setting `server.port` \(from environment variable MOFA_SERVER_PORT\) "
                                        "must be a port"),
    ("[log]\nlevel = \"loud\"\n", {}, r"setting `log.level` .* must be one of critical, error"),
    ("port = 1\n", {}, r"`port` must be a table"),
    ("[server\n", {}, r"is not valid TOML"),
    ("[metrics]\ntoken = \"short\"\n", {}, r"setting `metrics.token` .*: metrics_token must be a string of at least"),
    ("[otel]\nenabled = \"yes\"\n", {}, r"setting `otel.enabled` .* must be true or false"),
    ("[runs]\nheartbeat_seconds = 10\n", {}, r"owner_timeout_seconds must be longer than heartbeat_seconds"),
])
def test_bad_values_name_the_key_and_where_it_came_from(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(path=_file(tmp_path, text), environ=env)


def test_a_secret_is_not_echoed_in_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(path=_file(tmp_path, "[metrics]\ntoken = 12345678901234567890\n"), environ={})
    assert "12345678901234567890" not in str(err.value) and "metrics.token" in str(err.value)


def test_every_key_has_its_own_environment_variable() -> None:
    envs = [k.env for k in KEYS]
    assert len(set(envs)) == len(envs)
    assert all(e == "DATABASE_URL" or e.startswith("MOFA_") for e in envs)


def test_config_show_hides_secrets_and_loads_back(tmp_path: Path) -> None:
    path = _file(tmp_path)
    r = run_cli(["config", "show", "--config", str(path)], env={"MOFA_SERVER_WORKERS": "3"})
    assert r.exit_code == 0, r.output
    assert "file-password" not in r.output and "a-metrics-token-of-32-characters" not in r.output
    assert "workers = 3  # env MOFA_SERVER_WORKERS" in r.output and "pool_size = 7  # file" in r.output
    shown = tomllib.loads(r.stdout)  # the output is a config file
    assert shown["server"]["port"] == 8100 and shown["database"]["url"].startswith("postgresql://mofa:")
    r = run_cli(["config", "show", "--config", str(tmp_path / "nope.toml")])
    assert r.exit_code == 1 and "no such config file" in r.output


def test_serve_refuses_a_bad_setting_before_starting(tmp_path: Path) -> None:
    r = run_cli(["serve", "--config", str(_file(tmp_path, "[server]\nworkers = 0\n"))])
    assert r.exit_code == 1 and "setting `server.workers`" in r.output, r.output


def test_json_logs_are_one_object_a_line() -> None:
    import json
    import logging

    from mofa_sdk.server import JsonFormatter, log_config

    record = logging.LogRecord("mofa_sdk.server", logging.WARNING, __file__, 1, "run %s failed\nbadly", ("r1",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning" and data["logger"] == "mofa_sdk.server"
    assert data["message"] == "run r1 failed\nbadly"
    assert data["time"].endswith("+00:00")
    config = log_config("debug", "json")
    assert config["formatters"]["main"] == {"()": "mofa_sdk.server._logs.JsonFormatter"}
    assert config["loggers"]["mofa_sdk"]["level"] == "DEBUG" and config["loggers"]["uvicorn.access"]["level"] == "DEBUG"
    assert "format" in log_config("info", "text")["formatters"]["main"]
