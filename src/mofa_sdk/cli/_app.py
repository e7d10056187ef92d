"""The ``mofa`` command: the typer app, its global options and its entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._admin import agents_app, db_app, providers_app
from ._chat import chat
from ._common import configure_logging, flag, log_summary, state
from ._config import config_app
from ._keys import keys_app
from ._models import models
from ._serve import serve
from ._sessions import sessions_app
from ._usage import usage

__all__ = ["app", "main"]

app = typer.Typer(
    name="mofa",
    help="Streaming LLM conversations persisted to PostgreSQL or SQLite.",
    no_args_is_help=True,
    add_completion=False,
    # library errors are reported in one line by each command; anything else is a bug and keeps its traceback
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mofa-sdk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        bool, flag("--verbose", "-v", help="Show the full traceback of errors.")
    ] = False,
    version: Annotated[
        bool, flag("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """mofa: chat with an LLM, every turn saved; manage sessions, agents, providers and the database."""
    state.verbose = verbose
    configure_logging(verbose)
    ctx.call_on_close(log_summary)


app.command("chat")(chat)
app.command("usage")(usage)
app.command("serve")(serve)
app.command("models")(models)
app.add_typer(sessions_app, name="sessions")
app.add_typer(providers_app, name="providers")
app.add_typer(agents_app, name="agents")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")


def main() -> None:
    """Console-script entry point (``mofa``)."""
    app(prog_name="mofa")
