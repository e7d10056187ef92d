"""What every command shares: options, identity, the store, consoles and error handling."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from .._redact import redact_text, redact_url
from ..errors import MofaError, NotFoundError, PersistenceError
from ..ids import NIL_UUID as NIL
from ..ids import parse_uuid
from ..persistence import Store, connect_store

__all__ = [
    "NIL",
    "DbOpt",
    "TenantOpt",
    "UserOpt",
    "configure_logging",
    "console",
    "database_url",
    "err_console",
    "fail",
    "flag",
    "log_summary",
    "open_store",
    "resolve_tenant",
    "resolve_user",
    "run",
    "short_time",
    "state",
    "user_errors",
    "uses_default_database",
]

T = TypeVar("T")

#: stdout for results, stderr for status lines and errors; no colour codes when not a terminal
#: markup is off: names, titles and messages come from users and may hold [brackets]; colour goes through
#: Text and style= instead
#: piped output is read by scripts and wide terminals: tables are not squeezed into 80 columns there
#: (COLUMNS still wins when set)
console = Console(
    highlight=False, markup=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
)
err_console = Console(stderr=True, highlight=False, markup=False)


@dataclass
class _State:
    verbose: bool = False


state = _State()

def flag(*decls: str, **kwargs: Any) -> Any:
    """A boolean option. Help shows no type for it: typer would print ``<bool>`` beside every flag."""
    return typer.Option(*decls, metavar="", **kwargs)


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (postgresql://…, sqlite:///path.db). Default: DATABASE_URL, else an SQLite "
        "file in the user data folder.",
        show_default=False,
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant", metavar="UUID", help="Tenant UUID. Default: TENANT_ID, else the nil UUID.", show_default=False
    ),
]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", metavar="UUID", help="User UUID. Default: USER_ID, else the nil UUID.", show_default=False),
]


class _CliLogHandler(logging.Handler):
    """Library warnings as one line each on stderr.

    psycopg_pool logs a warning for every failed reconnection attempt while the database is down, which
    would bury the chat under them: those (all of ``psycopg*``) are counted instead, shown with --verbose,
    and summed up in one line when the command ends. A failed checkpoint is not shown either (it would
    cut into the reply on the terminal): the chat says after the reply whether it was saved."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.verbose = False
        self.hidden = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not self.verbose:
            if record.name.split(".", 1)[0] in ("psycopg", "psycopg_pool"):
                self.hidden += 1
                return
            if record.name == "mofa_sdk.persistence.checkpoint":
                return
        try:
            text = " ".join(record.getMessage().split())
        except Exception:  # a bad format string in someone's log call must not end the command
            self.handleError(record)
            return
        label = "error" if record.levelno >= logging.ERROR else "warning"
        err_console.print(Text(f"{label}: {text}", style="yellow"), soft_wrap=True)


_log_handler = _CliLogHandler()


def configure_logging(verbose: bool) -> None:
    """Route library warnings to stderr the CLI's way (the library itself never configures logging).
    Idempotent: each command of one process starts with a fresh count."""
    _log_handler.verbose = verbose
    _log_handler.hidden = 0
    root = logging.getLogger()
    if _log_handler not in root.handlers:
        root.addHandler(_log_handler)


def log_summary() -> None:
    """One line for the database pool's warnings hidden during the command, if any."""
    hidden, _log_handler.hidden = _log_handler.hidden, 0
    if hidden:
        err_console.print(Text(
            f"note: {hidden} connection {'warning' if hidden == 1 else 'warnings'} from the database pool "
            "hidden (--verbose shows them)", style="dim",
        ), soft_wrap=True)


def resolve_tenant(value: str | None) -> uuid.UUID:
    if value is not None:
        return parse_uuid(value, "--tenant")
    env = os.environ.get("TENANT_ID")
    return parse_uuid(env, "TENANT_ID") if env else NIL


def resolve_user(value: str | None) -> uuid.UUID:
    if value is not None:
        return parse_uuid(value, "--user")
    env = os.environ.get("USER_ID")
    return parse_uuid(env, "USER_ID") if env else NIL


def short_time(value: datetime | None, *, seconds: bool = True) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M")


def database_url(db: str | None) -> str:
    """The URL a command uses: ``--db``, else DATABASE_URL, else the SQLite file in the user data folder."""
    url = db or os.environ.get("DATABASE_URL")
    if not url:
        from ..persistence import default_database_url

        url = default_database_url()
    return url.strip()


def uses_default_database(db: str | None) -> bool:
    """True when neither ``--db`` nor DATABASE_URL names a database: the SQLite file in the user data folder."""
    return not db and not os.environ.get("DATABASE_URL")


def _say_default_database(url: str) -> None:
    # the trap: a key or an agent written here is invisible to a `mofa serve --db postgresql://…`
    err_console.print(Text(f"database: {redact_url(url)} (the default SQLite file; --db or DATABASE_URL "
                           "names another)", style="dim"), soft_wrap=True)


def _missing_sqlite_file(url: str) -> str | None:
    """The path of an SQLite URL whose file does not exist (None for any other URL)."""
    if not url.lower().startswith("sqlite:"):
        return None
    from ..persistence import path_from_url

    path = path_from_url(url)
    return None if path == ":memory:" or os.path.exists(path) else path


@asynccontextmanager
async def open_store(
    db: str | None, *, migrate: bool = True, read_only: bool = False, pending_ok: bool = False
) -> AsyncIterator[Store]:
    """The store at ``db`` (else DATABASE_URL, else the SQLite default), closed on exit.

    ``read_only``: for commands that only read. They never create a file or migrate: a missing SQLite
    file is NotFoundError, and a database with pending migrations is an error that says how to migrate
    (unless ``pending_ok``, for ``db status``, which shows them)."""
    url = database_url(db)
    if uses_default_database(db):
        _say_default_database(url)
    if read_only:
        missing = _missing_sqlite_file(url)
        if missing is not None:
            raise NotFoundError(
                f"no such database: {missing} (sqlite:///PATH is relative to the current folder, "
                "sqlite:////PATH absolute; `mofa chat` or `mofa db init` creates it)"
            )
        migrate = False
    store = await connect_store(url) if migrate else await connect_store(url, migrate=False)
    try:
        if read_only and not pending_ok:
            pending = [name for name, applied in await store.migration_status() if applied is None]
            if pending:
                raise PersistenceError(
                    f"the database {redact_url(url)} is not up to date (pending: {', '.join(pending)}); "
                    "run `mofa db migrate` first"
                )
        yield store
    finally:
        await store.close()


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {_one_line(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _one_line(message: str) -> str:
    from rich.markup import escape

    return escape(" ".join(message.split()))


@contextmanager
def user_errors() -> Iterator[None]:
    """A library error is the user's to fix: one line on stderr and exit 1 (a traceback with --verbose)."""
    try:
        yield
    except MofaError as exc:
        _report(exc)
    except OSError as exc:  # files named on the command line: missing folder, permission …
        _report(exc)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def _report(exc: BaseException) -> NoReturn:
    if state.verbose:
        traceback.print_exception(exc, file=sys.stderr)
    # the last net: whatever raised it, no URL in an error line shows its password or a secret parameter
    fail(redact_text(str(exc)) or type(exc).__name__)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine (the only place besides ``mofa chat`` where a loop starts)."""
    with user_errors():
        return asyncio.run(coro)
    raise AssertionError("unreachable")  # user_errors always raises or returns
