"""``mofa keys``: the tenant API keys of ``mofa serve``. A key is shown once, when it is made; only its hash
is stored."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..errors import NotFoundError
from ..ids import parse_uuid
from ..persistence import issue_api_key, mask_api_key
from ._common import (
    DbOpt,
    TenantOpt,
    UserOpt,
    console,
    err_console,
    open_store,
    resolve_tenant,
    resolve_user,
    run,
    short_time,
    uses_default_database,
)

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Manage the API keys of `mofa serve`.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="A label to tell keys apart.")] = "",
    db: DbOpt = None,
    tenant: TenantOpt = None,
    user: UserOpt = None,
) -> None:
    """Make a key for a tenant (acting as a user). The key is printed once, alone on the last line."""

    async def go() -> None:
        tid, uid = resolve_tenant(tenant), resolve_user(user)
        async with open_store(db) as store:
            row, key = await issue_api_key(store, tid, uid, name)
        # plain writes, not the rich console: the key must come out exactly, never wrapped
        typer.echo(f"key {row.id} for tenant {tid}, user {uid}{f' ({name})' if name else ''}")
        typer.echo("it is shown this once and cannot be read back; send it as `Authorization: Bearer <key>`:")
        typer.echo(key)
        if uses_default_database(db):
            err_console.print(
                "warning: the key was written to the default SQLite file: a `mofa serve` on another database "
                "(--db, DATABASE_URL) answers 401 to it; create keys with the --db the service uses",
                style="yellow", soft_wrap=True,
            )

    run(go())


@keys_app.command("list")
def keys_list(db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """The tenant's keys (masked), revoked ones included."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            rows = await store.list_api_keys(tid)
        if not rows:
            console.print(f"no API keys in tenant {tid}: make one with `mofa keys create`", style="dim")
            return
        table = Table(show_edge=False, pad_edge=False)
        for col in ("id", "name", "key", "user", "created", "last used", "revoked"):
            table.add_column(col, no_wrap=col in ("id", "key", "user"))
        for k in rows:
            table.add_row(str(k.id), k.name or "-", mask_api_key(k), str(k.user_id), short_time(k.create_time),
                          short_time(k.last_used_time), short_time(k.revoke_time))
        console.print(table)

    run(go())


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `mofa keys list`).")],
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Revoke a key: requests made with it get 401 from now on."""

    async def go() -> None:
        tid, kid = resolve_tenant(tenant), parse_uuid(key_id, "key id")
        async with open_store(db) as store:
            if not await store.revoke_api_key(tid, kid):
                known = {k.id: k for k in await store.list_api_keys(tid)}
                if kid in known:
                    typer.echo(f"key {kid} was revoked already")
                    return
                raise NotFoundError(f"no API key {kid} in tenant {tid}; see `mofa keys list`")
        typer.echo(f"revoked key {kid}")

    run(go())
