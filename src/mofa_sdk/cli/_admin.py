"""``mofa providers``, ``mofa agents`` and ``mofa db``: the rows a database-driven agent is built from."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.table import Table
from rich.text import Text

from .._redact import mask_key, redact_url
from .._vocab import LOCAL_PROVIDER_TYPE, OPENAI_PROVIDER_TYPES, is_local_provider, is_openai_provider
from ..entities import Agent, Provider
from ..errors import ConfigError, ConflictError, NotFoundError, PersistenceError
from ..ids import parse_uuid, utc_now
from ..persistence import Store, is_encrypted, keys_left_encrypted
from ._common import (
    DbOpt,
    TenantOpt,
    console,
    database_url,
    flag,
    open_store,
    resolve_tenant,
    run,
    short_time,
)

__all__ = ["agents_app", "db_app", "providers_app"]

providers_app = typer.Typer(
    help="Manage LLM providers (endpoints and keys) in the database.", no_args_is_help=True
)
agents_app = typer.Typer(help="Manage database-driven agents.", no_args_is_help=True)
db_app = typer.Typer(help="Create and migrate the database.", no_args_is_help=True)

#: the --type help: every provider type
_TYPES = f"{', '.join(OPENAI_PROVIDER_TYPES)} or {LOCAL_PROVIDER_TYPE}"


def _yes_no(flag: bool) -> Text:
    return Text("yes", style="green") if flag else Text("no", style="red")


def _base(api_base: str | None, ptype: str) -> str:
    """``api_base`` as shown: a URL may carry credentials (``http://u:pw@…``, ``?key=…``); a local model's
    path carries none and is shown as given."""
    if not api_base:
        return "-"
    return api_base if is_local_provider(ptype) else redact_url(api_base)


def _secret(provider: Provider) -> str | None:
    return provider.api_key.get_secret_value() if provider.api_key is not None else None


def _masked(provider: Provider) -> str:
    """The key as lists show it; one read without MOFA_SECRET_KEY (keys_left_encrypted) says so."""
    key = _secret(provider)
    return "encrypted" if is_encrypted(key) else mask_key(key)


async def _provider(store: Store, tenant: uuid.UUID, name: str) -> Provider:
    found = await store.get_provider_by_name(tenant, name)
    if found is None:
        raise NotFoundError(f"no provider named {name!r} in tenant {tenant}; see `mofa providers list`")
    return found


async def _agent(store: Store, tenant: uuid.UUID, code: str) -> Agent:
    found = await store.get_agent_by_code_and_tenant(tenant, code)
    if found is None:
        raise NotFoundError(f"no agent with code {code!r} in tenant {tenant}; see `mofa agents list`")
    return found


def _read_key(env_var: str | None, prompt: bool) -> str | None:
    """The API key from a named environment variable or a hidden prompt; never from the command line,
    where it would land in shell history and process listings."""
    if env_var and prompt:
        raise ConfigError("give either --api-key-env or --prompt-key, not both")
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise ConfigError(f"environment variable {env_var} (from --api-key-env) is not set or empty")
        return value.strip()
    if prompt:
        value = typer.prompt("API key", hide_input=True, default="", show_default=False)
        return value.strip() or None
    return None


# -- providers --------------------------------------------------------------------------------------
@providers_app.command("add")
def providers_add(
    name: Annotated[
        str, typer.Argument(help="A name unique in the tenant, e.g. local-llm.", show_default=False)
    ],
    ptype: Annotated[
        str,
        typer.Option(
            "--type", help=f"{_TYPES} (a GGUF path in --api-base)."
        ),
    ] = "compatible",
    api_base: Annotated[
        str | None,
        typer.Option("--api-base", help="Base URL, e.g. http://127.0.0.1:8080/v1.", show_default=False),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env", help="Read the API key from this environment variable.", show_default=False
        ),
    ] = None,
    prompt_key: Annotated[bool, flag("--prompt-key", help="Ask for the API key (hidden).")] = False,
    disabled: Annotated[bool, flag("--disabled", help="Add it disabled.")] = False,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Add a provider. The key is stored encrypted when MOFA_SECRET_KEY is set."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        _check_api_base(ptype, api_base)
        key = _read_key(api_key_env, prompt_key)
        row = Provider(
            tenant_id=tid,
            provider_name=name,
            provider_type=ptype,
            api_base=api_base,
            api_key=SecretStr(key) if key else None,
            enabled=not disabled,
        )
        async with open_store(db) as store:
            await store.create_provider(row)
        where = f" at {_base(api_base, ptype)}" if api_base else ""
        console.print(f"added provider {name} ({ptype}{where}, key {mask_key(key)}) in tenant {tid}")

    run(go())


@providers_app.command("list")
def providers_list(db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """The tenant's providers; keys are masked."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db, read_only=True) as store:
            with keys_left_encrypted():  # shown masked: no need for MOFA_SECRET_KEY
                rows = await store.list_providers(tid)
        if not rows:
            console.print(f"no providers in tenant {tid}: add one with `mofa providers add`", style="dim")
            return
        table = Table(show_edge=False, pad_edge=False)
        for col in ("name", "type", "api base", "key", "enabled", "id"):
            table.add_column(col, no_wrap=col in ("name", "id", "key"))
        for p in rows:
            table.add_row(
                p.provider_name,
                p.provider_type,
                _base(p.api_base, p.provider_type),
                _masked(p),
                _yes_no(p.enabled),
                str(p.id),
            )
        console.print(table)

    run(go())


def _set_provider(name: str, enabled: bool, db: str | None, tenant: str | None) -> None:
    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            row = await _provider(store, tid, name)
            await store.update_provider(row.model_copy(update={"enabled": enabled, "update_time": utc_now()}))
        console.print(f"provider {name} {'enabled' if enabled else 'disabled'}")

    run(go())


@providers_app.command("enable")
def providers_enable(name: str, db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """Enable a provider."""
    _set_provider(name, True, db, tenant)


@providers_app.command("disable")
def providers_disable(name: str, db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """Disable a provider: agents using it refuse to build."""
    _set_provider(name, False, db, tenant)


def _check_api_base(ptype: str, api_base: str | None) -> None:
    if is_openai_provider(ptype) and api_base is not None and not api_base.startswith(("http://", "https://")):
        raise ConfigError(f"--api-base must be an http:// or https:// URL, got {redact_url(api_base)!r}")


@providers_app.command("edit")
def providers_edit(
    name: Annotated[str, typer.Argument(help="The provider's name.", show_default=False)],
    new_name: Annotated[str | None, typer.Option("--name", help="Rename it.", show_default=False)] = None,
    ptype: Annotated[
        str | None, typer.Option("--type", help=f"{_TYPES}.", show_default=False)
    ] = None,
    api_base: Annotated[
        str | None, typer.Option("--api-base", help="Base URL (local: the GGUF path).", show_default=False)
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Replace the key with this variable's value.", show_default=False),
    ] = None,
    prompt_key: Annotated[bool, flag("--prompt-key", help="Replace the key (asked, hidden).")] = False,
    clear_key: Annotated[bool, flag("--clear-key", help="Remove the stored key.")] = False,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Change a provider's name, type, base URL or key; what is not given stays as it is."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        if clear_key and (api_key_env or prompt_key):
            raise ConfigError("give either --clear-key or a new key, not both")
        key = _read_key(api_key_env, prompt_key)
        async with open_store(db) as store:
            # a key that is kept is written again, so it must be readable (MOFA_SECRET_KEY for an encrypted one)
            if key is not None or clear_key:
                with keys_left_encrypted():
                    row = await _provider(store, tid, name)
            else:
                row = await _provider(store, tid, name)
            update: dict[str, object] = {"update_time": utc_now()}
            if new_name is not None:
                update["provider_name"] = new_name
            if ptype is not None:
                update["provider_type"] = ptype
            if api_base is not None:
                update["api_base"] = api_base or None
            if key is not None:
                update["api_key"] = SecretStr(key)
            elif clear_key:
                update["api_key"] = None
            if len(update) == 1:
                raise ConfigError("nothing to change: give --name, --type, --api-base or a key option")
            changed = Provider.model_validate({**row.model_dump(), **update})
            _check_api_base(changed.provider_type, changed.api_base)
            await store.update_provider(changed)
        console.print(f"updated provider {changed.provider_name}: {', '.join(k for k in update if k != 'update_time')}")

    run(go())


@providers_app.command("remove")
def providers_remove(
    name: Annotated[str, typer.Argument(help="The provider's name.", show_default=False)],
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Delete a provider no agent uses."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            with keys_left_encrypted():  # only its id is needed
                row = await _provider(store, tid, name)
            users = [a.agent_code for a in await store.list_agents(tid) if a.provider_id == row.id]
            if users:
                raise ConflictError(
                    f"provider {name!r} is used by agent{'s' if len(users) > 1 else ''} {', '.join(users)}: "
                    "remove them or move them to another provider (`mofa agents edit CODE --provider P`) first"
                )
            await store.delete_provider(tid, row.id)
        console.print(f"removed provider {name}")

    run(go())


# -- agents -----------------------------------------------------------------------------------------
@agents_app.command("add")
def agents_add(
    code: Annotated[
        str, typer.Argument(help="A code unique in the tenant, e.g. chat-assistant.", show_default=False)
    ],
    provider: Annotated[str, typer.Option("--provider", help="The provider's name.", show_default=False)],
    model: Annotated[
        str, typer.Option("--model", help="Model name sent to the provider.", show_default=False)
    ],
    name: Annotated[str | None, typer.Option("--name", help="Display name (default: the code).")] = None,
    window: Annotated[
        int | None, typer.Option("--window", min=0, help="Past rounds the model sees (default: all).")
    ] = None,
    system: Annotated[str, typer.Option("--system", help="System prompt.")] = "",
    temperature: Annotated[float | None, typer.Option("--temperature", min=0, max=2)] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Max completion tokens.")
    ] = None,
    order: Annotated[int, typer.Option("--order", help="Sort order in lists.")] = 0,
    disabled: Annotated[bool, flag("--disabled", help="Add it disabled.")] = False,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Add an agent bound to a provider of the same tenant."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            if await store.get_agent_by_code_and_tenant(tid, code) is not None:
                raise ConflictError(f"an agent with code {code!r} already exists in tenant {tid}")
            with keys_left_encrypted():  # only the provider's id is needed here, not its key
                prov = await _provider(store, tid, provider)
            row = Agent(
                tenant_id=tid,
                agent_code=code,
                agent_name=name or code,
                agent_order=order,
                agent_status=not disabled,
                context_limit=window,
                max_completion_tokens=max_tokens,
                model_name=model,
                provider_id=prov.id,
                system_prompt=system,
                temperature=temperature,
            )
            await store.create_agent(row)
        console.print(f"added agent {code} ({model} via {provider}) in tenant {tid}")

    run(go())


@agents_app.command("list")
def agents_list(db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """The tenant's agents."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db, read_only=True) as store:
            agents = await store.list_agents(tid)
            with keys_left_encrypted():
                providers = {p.id: p.provider_name for p in await store.list_providers(tid)}
        if not agents:
            console.print(f"no agents in tenant {tid}: add one with `mofa agents add`", style="dim")
            return
        table = Table(show_edge=False, pad_edge=False)
        for col in ("code", "name", "provider", "model", "window", "enabled"):
            table.add_column(col, no_wrap=col in ("code", "provider", "model"))
        for a in agents:
            table.add_row(
                a.agent_code,
                a.agent_name,
                providers.get(a.provider_id, "?"),
                a.model_name,
                "all" if a.context_limit is None else str(a.context_limit),
                _yes_no(a.agent_status),
            )
        console.print(table)

    run(go())


@agents_app.command("show")
def agents_show(code: str, db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """One agent with its provider."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db, read_only=True) as store:
            a = await _agent(store, tid, code)
            with keys_left_encrypted():
                p = await store.get_provider(tid, a.provider_id)
        table = Table(show_header=False, show_edge=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        rows: list[tuple[str, str | Text]] = [
            ("code", a.agent_code),
            ("name", a.agent_name),
            ("id", str(a.id)),
            ("enabled", _yes_no(a.agent_status)),
            ("model", a.model_name),
            (
                "provider",
                f"{p.provider_name} ({p.provider_type}, {_base(p.api_base, p.provider_type)}, "
                f"key {_masked(p)})"
                + ("" if p.enabled else " [disabled]")
                if p is not None
                else f"missing ({a.provider_id})",
            ),
            ("window", "all rounds" if a.context_limit is None else f"{a.context_limit} rounds"),
            ("temperature", "-" if a.temperature is None else str(a.temperature)),
            ("max tokens", "-" if a.max_completion_tokens is None else str(a.max_completion_tokens)),
            ("system prompt", Text(a.system_prompt or "-")),
            ("updated", short_time(a.update_time)),
        ]
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)

    run(go())


@agents_app.command("edit")
def agents_edit(
    code: Annotated[str, typer.Argument(help="The agent's code.", show_default=False)],
    provider: Annotated[str | None, typer.Option("--provider", help="Another provider (its name).",
                                                 show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name.", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.", show_default=False)] = None,
    window: Annotated[
        int | None, typer.Option("--window", min=0, help="Past rounds the model sees.", show_default=False)
    ] = None,
    all_rounds: Annotated[bool, flag("--all-rounds", help="Send every past round (no window).")] = False,
    system: Annotated[str | None, typer.Option("--system", help="System prompt.", show_default=False)] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0, max=2, show_default=False)
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Max completion tokens.", show_default=False)
    ] = None,
    order: Annotated[int | None, typer.Option("--order", help="Sort order in lists.", show_default=False)] = None,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Change an agent's settings; what is not given stays as it is."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        if window is not None and all_rounds:
            raise ConfigError("give either --window or --all-rounds, not both")
        async with open_store(db) as store:
            row = await _agent(store, tid, code)
            update: dict[str, object] = {}
            if provider is not None:
                with keys_left_encrypted():  # only its id is needed
                    update["provider_id"] = (await _provider(store, tid, provider)).id
            for key, value in (("model_name", model), ("agent_name", name), ("system_prompt", system),
                               ("temperature", temperature), ("max_completion_tokens", max_tokens),
                               ("agent_order", order), ("context_limit", window)):
                if value is not None:
                    update[key] = value
            if all_rounds:
                update["context_limit"] = None
            if not update:
                raise ConfigError("nothing to change: give at least one option (see `mofa agents edit -h`)")
            changed = Agent.model_validate({**row.model_dump(), **update, "update_time": utc_now()})
            await store.update_agent(changed)
        changed_options = ", ".join(f"--{_EDIT_OPTIONS.get(k, k)}" for k in update)
        console.print(f"updated agent {code}: {changed_options}")

    run(go())


#: the option of `agents edit` that sets each column, for what it reports (the user never typed column names)
_EDIT_OPTIONS = {
    "provider_id": "provider", "model_name": "model", "agent_name": "name", "system_prompt": "system",
    "temperature": "temperature", "max_completion_tokens": "max-tokens", "agent_order": "order",
    "context_limit": "window",
}


@agents_app.command("remove")
def agents_remove(
    code: Annotated[str, typer.Argument(help="The agent's code.", show_default=False)],
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Delete an agent. Its sessions and call records stay (they keep its id)."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            row = await _agent(store, tid, code)
            await store.delete_agent(tid, row.id)
        console.print(f"removed agent {code}")

    run(go())


def _set_agent(code: str, enabled: bool, db: str | None, tenant: str | None) -> None:
    async def go() -> None:
        tid = resolve_tenant(tenant)
        async with open_store(db) as store:
            row = await _agent(store, tid, code)
            await store.update_agent(
                row.model_copy(update={"agent_status": enabled, "update_time": utc_now()})
            )
        console.print(f"agent {code} {'enabled' if enabled else 'disabled'}")

    run(go())


@agents_app.command("enable")
def agents_enable(code: str, db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """Enable an agent."""
    _set_agent(code, True, db, tenant)


@agents_app.command("disable")
def agents_disable(code: str, db: DbOpt = None, tenant: TenantOpt = None) -> None:
    """Disable an agent: `mofa chat --agent` and from_agent_config refuse it."""
    _set_agent(code, False, db, tenant)


# -- db ---------------------------------------------------------------------------------------------
def _describe(db: str | None, store: Store) -> str:
    return f"{redact_url(database_url(db))} ({store.dialect})"


async def _print_status(store: Store) -> None:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("migration", no_wrap=True)
    table.add_column("applied", no_wrap=True)
    for name, applied in await store.migration_status():
        table.add_row(name, short_time(applied) if applied else Text("pending", style="yellow"))
    console.print(table)


async def _check_schema(store: Store, db: str | None) -> None:
    """The migrations table says what was applied, not what is there: a schema changed by hand afterwards
    is an error here, since migrating again would change nothing."""
    problems = await store.check_schema()
    if problems:
        raise PersistenceError(
            f"every migration is applied to {_describe(db, store)}, but the schema was changed by hand: "
            f"{'; '.join(problems)}; restore what is missing (as the migrations define it) or restore a backup"
        )


@db_app.command("init")
def db_init(db: DbOpt = None) -> None:
    """Create the database schema (SQLite: the file too) and apply every migration."""

    async def go() -> None:
        async with open_store(db, migrate=False) as store:
            applied = await store.migrate()
            await _check_schema(store, db)
            console.print(
                f"database {_describe(db, store)} is ready"
                + (f"; applied {', '.join(applied)}" if applied else "; it was already up to date")
            )
            await _print_status(store)

    run(go())


@db_app.command("migrate")
def db_migrate(db: DbOpt = None) -> None:
    """Apply pending migrations."""

    async def go() -> None:
        async with open_store(db, migrate=False) as store:
            applied = await store.migrate()
            await _check_schema(store, db)
            if applied:
                console.print(
                    f"applied {len(applied)} migration(s) to {_describe(db, store)}: {', '.join(applied)}"
                )
            else:
                console.print(f"{_describe(db, store)} is up to date: nothing to apply")

    run(go())


@db_app.command("status")
def db_status(db: DbOpt = None) -> None:
    """Which migrations are applied, and which are pending."""

    async def go() -> None:
        async with open_store(db, read_only=True, pending_ok=True) as store:
            console.print(f"database {_describe(db, store)}")
            await _print_status(store)
            if all(applied for _, applied in await store.migration_status()):
                await _check_schema(store, db)

    run(go())


@db_app.command("enable-rls")
def db_enable_rls(
    pin: Annotated[
        list[str] | None,
        typer.Option(
            "--pin",
            help="ROLE=TENANT: the login role may only ever serve that tenant (repeatable).",
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
) -> None:
    """PostgreSQL only: turn on row-level security (one policy per table, reading the tenant each
    transaction is bound to by mofa_bind_tenant).

    Run as the role that owns the tables; then connect the application as another role with
    ``row_level_security=True`` so the database itself keeps tenants apart. A role pinned with --pin
    (per-tenant credentials) cannot bind any other tenant, whatever SQL it sends."""

    async def go() -> None:
        pins: dict[str, uuid.UUID] = {}
        for item in pin or []:
            role, sep, tenant = item.partition("=")
            if not sep or not role.strip():
                raise ConfigError(f"--pin takes ROLE=TENANT, got {item!r}")
            pins[role.strip()] = parse_uuid(tenant.strip(), f"the tenant of --pin {role.strip()}")
        async with open_store(db) as store:
            enable = getattr(store, "enable_row_level_security", None)
            if enable is None:
                raise ConfigError(
                    f"row-level security needs PostgreSQL; {_describe(db, store)} is not a PostgreSQL database"
                )
            tables = await enable(pins)
            console.print(f"row-level security is on in {_describe(db, store)} for {', '.join(tables)}")
            for role, pinned in pins.items():
                console.print(f"login role {role} may only serve tenant {pinned}")

    run(go())
