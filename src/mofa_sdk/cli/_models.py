"""``mofa models``: what the configured providers offer (each provider row of the tenant, and the one the
environment picks for ``mofa chat`` without ``--agent``)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from .._redact import redact_text, redact_url
from .._vocab import LOCAL_PROVIDER_TYPE, is_local_provider, is_openai_provider
from ..entities import Provider
from ..errors import ConfigError, NotFoundError
from ..persistence import is_encrypted, keys_left_encrypted
from ._common import DbOpt, TenantOpt, console, open_store, resolve_tenant, run

__all__ = ["models"]

@dataclass
class _Row:
    source: str
    where: str
    models: list[str]
    problem: str | None = None


def _local_name(path: str | None) -> list[str]:
    from ..llm import find_default_model

    return [Path(path).stem if path else find_default_model().stem]


async def _listed(base_url: str | None, key: str | None, seconds: float) -> list[str]:
    """The model ids an OpenAI-compatible server lists at GET /models."""
    import openai

    client = openai.AsyncOpenAI(api_key=key or "unused", base_url=base_url, timeout=seconds, max_retries=0)
    try:
        page = await client.models.list()
        return sorted(m.id for m in page.data)
    finally:
        await client.close()


async def _row_for(source: str, ptype: str, base: str | None, key: str | None, seconds: float) -> _Row:
    where = (base or "-") if is_local_provider(ptype) else redact_url(base or "https://api.openai.com/v1")
    if is_local_provider(ptype):
        try:
            return _Row(source, where, _local_name(base))
        except ConfigError as exc:
            return _Row(source, where, [], str(exc))
    if not is_openai_provider(ptype):
        return _Row(source, where, [], f"unknown provider type {ptype!r}")
    if is_encrypted(key):
        return _Row(source, where, [], "its key is encrypted: set MOFA_SECRET_KEY to ask the server")
    try:
        return _Row(source, where, await asyncio.wait_for(_listed(base, key, seconds), seconds + 1))
    except Exception as exc:  # any failure of one server is that row's note, never the command's end
        reason = redact_text(" ".join(str(exc).split()), [key]) or type(exc).__name__
        return _Row(source, where, [], f"cannot list its models ({type(exc).__name__}: {reason[:200]})")


def _environment() -> tuple[str, str | None, str | None]:
    """The provider ``mofa chat`` uses without --agent: (type, base, key), as default_provider picks it."""
    key, base = os.environ.get("OPENAI_API_KEY") or None, os.environ.get("OPENAI_BASE_URL") or None
    if key or base:
        return "compatible", base, key
    return LOCAL_PROVIDER_TYPE, None, None


def models(
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each server's list.")
    ] = 5.0,
    db: DbOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """The models the tenant's providers offer (asked from each server), and the environment's default."""

    async def go() -> None:
        tid = resolve_tenant(tenant)
        providers: list[Provider] = []
        agents: dict[str, list[str]] = {}
        try:
            async with open_store(db, read_only=True) as store:
                with keys_left_encrypted():
                    providers = await store.list_providers(tid)
                for a in await store.list_agents(tid):
                    agents.setdefault(str(a.provider_id), []).append(f"{a.agent_code} ({a.model_name})")
        except NotFoundError:  # no database yet: the environment's provider is still worth showing
            pass
        rows = await asyncio.gather(
            _row_for("environment", *_environment(), timeout),
            *(
                _row_for(
                    p.provider_name + ("" if p.enabled else " (disabled)"), p.provider_type, p.api_base,
                    p.api_key.get_secret_value() if p.api_key is not None else None, timeout,
                )
                for p in providers
            ),
        )
        table = Table(show_edge=False, pad_edge=False)
        for col in ("provider", "at", "models", "agents"):
            table.add_column(col, no_wrap=col == "provider")
        used = [""] + [", ".join(agents.get(str(p.id), [])) or "-" for p in providers]
        for row, agent_list in zip(rows, used, strict=True):
            cell = Text(", ".join(row.models)) if row.models else Text(row.problem or "none listed", style="yellow")
            table.add_row(row.source, row.where, cell, agent_list or "-")
        console.print(table)

    run(go())
