"""The shared PostgreSQL server of the tests: fresh schemas of it, and the rule that CI never skips it.

``MOFA_TEST_DATABASE_URL`` names the server (``make test`` sets it). Every schema made here is dropped at the end
of the run, so parallel runs of the suite do not meet."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

__all__ = [
    "IN_CI",
    "SchemaFactory",
    "fresh_pg_url",
    "need_postgres",
    "pg_admin_url",
    "pg_schema_factory",
    "pg_url",
    "with_search_path",
]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

#: ``make()`` -> the URL of a new, empty schema (its search_path)
SchemaFactory = Callable[[], str]


def need_postgres() -> str:
    """The server's URL; a skip without one (a failure under ``CI=true``)."""
    url = os.environ.get("MOFA_TEST_DATABASE_URL") or None
    if url is None:
        if IN_CI:
            pytest.fail("CI=true but MOFA_TEST_DATABASE_URL is not set: PostgreSQL tests must not skip in CI")
        pytest.skip("no PostgreSQL: set MOFA_TEST_DATABASE_URL or run `make test`")
    return url


def with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return need_postgres()


@pytest.fixture(scope="session")
def pg_schema_factory(pg_admin_url: str) -> Iterator[SchemaFactory]:
    """Makes fresh schemas (``make()`` -> url whose search_path is that schema); drops them all at the end."""
    import psycopg

    made: list[str] = []

    def make() -> str:
        name = f"mofa_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return with_search_path(pg_admin_url, name)

    yield make
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_url(pg_schema_factory: SchemaFactory) -> str:
    """One migrated schema shared by the run; tests isolate themselves with fresh tenant ids."""
    return pg_schema_factory()


@pytest.fixture
def fresh_pg_url(pg_schema_factory: SchemaFactory) -> str:
    """An empty schema of its own, for migration tests."""
    return pg_schema_factory()
