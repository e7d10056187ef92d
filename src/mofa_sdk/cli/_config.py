"""``mofa config show``: the settings ``mofa serve`` would run with, where each came from, secrets hidden."""

from __future__ import annotations

import json
from typing import Any

import typer

from .._redact import REDACTED, redact_url
from ..persistence import default_database_url
from ..server import KEYS, ServeSettings, default_config_path, load_settings
from ._common import console, user_errors
from ._serve import ConfigOpt

__all__ = ["config_app"]

config_app = typer.Typer(help="The settings of `mofa serve`: flags > environment > config file > defaults.",
                         no_args_is_help=True)


@config_app.command("show")
def show(config_file: ConfigOpt = None) -> None:
    """Print the effective settings as TOML (a valid config file), each with where it came from; the
    database password and the metrics token are hidden."""
    with user_errors():
        settings = load_settings(path=config_file)
    console.print(render(settings), soft_wrap=True)


def render(settings: ServeSettings) -> str:
    where = str(settings.path) if settings.path is not None else f"none ({default_config_path()} does not exist)"
    lines = ["# mofa serve: effective settings (flags > environment > config file > defaults)",
             f"# config file: {where}"]
    section = ""
    for key in KEYS:
        head, _, name = key.name.partition(".")
        if head != section:
            section = head
            lines += ["", f"[{section}]"]
        value = settings.value(key)
        if key.name == "database.url" and value is None:
            value = default_database_url()  # what every command uses then
        source = settings.sources.get(key.name, "default")
        note = f"env {key.env}" if source == "env" else source
        if value is None:
            lines.append(f"# {name} = (not set)  # {note}; env {key.env}")
            continue
        lines.append(f"{name} = {_toml(_shown(key.name, key.secret, value))}  # {note}")
    return "\n".join(lines)


def _shown(name: str, secret: bool, value: Any) -> Any:
    if name == "database.url":
        return redact_url(str(value))
    return REDACTED if secret else value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string is a JSON string
