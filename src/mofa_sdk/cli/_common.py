"""What every command shares: options, identity, the store, consoles and error handling."""

from __future__ import annotations

import asyncio
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

from .._redact import redact_text
from ..errors import MofaError
from ..ids import parse_uuid
from ..persistence import Store, connect_store

__all__ = [
    "NIL",
    "DbOpt",
    "TenantOpt",
    "UserOpt",
    "console",
    "err_console",
    "fail",
    "open_store",
    "resolve_tenant",
    "resolve_user",
    "run",
    "short_time",
    "state",
    "user_errors",
]

T = TypeVar("T")
NIL = uuid.UUID(int=0)

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

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (postgresql://…, sqlite:///path.db). Default: DATABASE_URL, else an SQLite "
        "file in the user data folder.",
        show_default=False,
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option("--tenant", help="Tenant UUID. Default: TENANT_ID, else the nil UUID.", show_default=False),
]
UserOpt = Annotated[
    str | None,
    typer.Option("--user", help="User UUID. Default: USER_ID, else the nil UUID.", show_default=False),
]


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


@asynccontextmanager
async def open_store(db: str | None, *, migrate: bool = True) -> AsyncIterator[Store]:
    """The store at ``db`` (else DATABASE_URL, else the SQLite default), closed on exit."""
    store = await connect_store(db) if migrate else await connect_store(db, migrate=False)
    try:
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
