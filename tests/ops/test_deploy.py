"""The deployment recipe (deploy/): the compose file's settings are valid config for ``mofa serve``; the image
runs as a non-root user with a health check and the serve extra, and no local model; the systemd unit runs
``mofa serve`` on the config file it documents. (Building the image needs a Docker daemon: not here.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from mofa_sdk.server import KEYS, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` against the given shell environment."""
    return _VAR.sub(lambda m: shell.get(m.group(1)) or (m.group(2) or ""), value)


def _service_env(shell: dict[str, str]) -> dict[str, str]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env = compose["services"]["mofa"]["environment"]
    assert isinstance(env, dict)
    out = {k: _interpolate(str(v), shell) for k, v in env.items()}
    return {k: v for k, v in out.items() if v != ""}  # compose passes "" too; the settings ignore empty values


def test_the_compose_files_settings_are_valid_config() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mofa = compose["services"]["mofa"]
    # the config file it mounts is the one MOFA_CONFIG names
    (mount,) = [v for v in mofa["volumes"] if v.endswith(":ro")]
    source, target, _ = mount.split(":")
    env = _service_env({})
    assert env["MOFA_CONFIG"] == target and (DEPLOY / source).resolve() == DEPLOY / "mofa.toml"
    settings = load_settings(environ={**env, "MOFA_CONFIG": str(DEPLOY / source)})
    assert settings.host == "0.0.0.0" and settings.port == 8000  # what the ports mapping publishes
    assert mofa["ports"] == [f"{settings.port}:8000"]
    url = settings.config.database_url or ""
    assert url.startswith("postgresql://mofa:") and url.endswith("@db:5432/mofa")  # the db service
    assert settings.workers > 1  # needs PostgreSQL: it is
    assert settings.config.metrics and not settings.config.otel and settings.log_format == "json"
    # the toggles the operator sets in the shell work too
    on = load_settings(environ={**_service_env({"MOFA_OTEL_ENABLED": "true",
                                                "MOFA_METRICS_TOKEN": "x" * 32}),
                                "MOFA_CONFIG": str(DEPLOY / source)})
    assert on.config.otel and on.config.metrics_token == "x" * 32
    # every MOFA_ variable it sets is a setting's (a typo would be silently ignored)
    known = {k.env for k in KEYS} | {"MOFA_CONFIG", "MOFA_SECRET_KEY"}
    assert {k for k in env if k.startswith("MOFA_")} <= known
    db = compose["services"]["db"]
    assert db["environment"]["POSTGRES_DB"] == "mofa" and mofa["depends_on"]["db"]["condition"] == "service_healthy"


def test_the_image_is_non_root_with_a_health_check_and_no_local_model() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")  # continuation lines, as Docker joins them
    lines = [line for line in joined.splitlines() if line and not line.startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in lines)
    (install,) = [line for line in lines if "pip install" in line]
    extras = re.search(r"\[([\w,]+)\]", install)
    assert extras is not None and "serve" in extras.group(1).split(",")
    assert not {"local", "server"} & set(extras.group(1).split(","))  # no llama.cpp, no model in the image
    # the image's own defaults are valid settings
    env = dict(re.findall(r"(\w+)=(\S+)", next(line for line in lines if line.startswith("ENV "))))
    s = load_settings(environ={k: v for k, v in env.items() if k.startswith("MOFA_")})
    assert s.host == "0.0.0.0" and f"EXPOSE {s.port}" in text


def test_the_systemd_unit_serves_the_config_file_it_documents() -> None:
    text = (DEPLOY / "mofa.service").read_text()
    (exec_start,) = [line.partition("=")[2] for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/mofa") and argv[1] == "serve"
    assert argv[argv.index("--config") + 1] == "/etc/mofa/mofa.toml"
    assert "EnvironmentFile=/etc/mofa/mofa.env" in text and ("DynamicUser=yes" in text or "User=" in text)
