"""PostgreSQL roles for the row-level-security tests: login roles that own nothing, and a schema secured by
``mofa db enable-rls`` (tests/reliability/test_tenant_isolation.py, tests/server/test_rls.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from mofa_sdk.persistence import PostgresStore

from .cli import Cli

__all__ = ["app_role", "enable_rls", "make_role", "secured"]


def _role_url(owner_url: str, role: str) -> str:
    parts = urlsplit(owner_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))


@pytest.fixture
def make_role(fresh_pg_url: str) -> Iterator[Callable[[], str]]:
    """Makes login roles that do not own the tables (and are no superuser), granted the tables of the
    schema (every table, the tenant binding included, as a careless GRANT … ON ALL TABLES would).
    Returns each one's URL; drops them at the end."""
    made: list[str] = []

    def make() -> str:
        role = f"mofa_app_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS')
            schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
            conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
            conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        made.append(role)
        return _role_url(fresh_pg_url, role)

    yield make
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        for role in made:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


async def enable_rls(owner_url: str, *args: str) -> str:
    result = await Cli(owner_url, uuid.uuid4(), uuid.uuid4())("db", "enable-rls", "--db", owner_url, *args)
    assert result.exit_code == 0, result.output
    assert "row-level security is on" in result.output and "entity_message" in result.output
    return result.output


@pytest.fixture
async def secured(fresh_pg_url: str) -> str:
    """A schema migrated by its owner, with row-level security enabled through the CLI."""
    owner = await PostgresStore.connect(fresh_pg_url)  # migrates, as the owner
    await owner.close()
    await enable_rls(fresh_pg_url)
    return fresh_pg_url


@pytest.fixture
def app_role(secured: str, make_role: Callable[[], str]) -> str:
    return make_role()  # granted after enable-rls: the binding tables are among "ALL TABLES"
