"""The whole store contract through PgBouncer in transaction pooling mode.

Every contract test that takes the ``store`` fixture is collected here again, with ``store`` a
PostgresStore connected through PgBouncer with server-side prepared statements off
(``prepare_threshold=None``): a pooler hands each transaction to any server connection, where a
statement prepared on another one does not exist. The raw-row checks of the contract still read the
same schema directly (``pg_url``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from mofa_sdk.persistence import PostgresStore, connect_store
from tests._pgbouncer import PgBouncer
from tests.persistence import test_store_contract as contract

# the contract's own tests that run on a store, collected again in this module
for _name, _fn in vars(contract).items():
    if _name.startswith("test_") and "store" in inspect.signature(_fn).parameters:
        globals()[_name] = _fn


@pytest.fixture(scope="session")
def pgbouncer(pg_url: str) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pg_url).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
async def store(pgbouncer: PgBouncer) -> AsyncIterator[Any]:
    s = await connect_store(pgbouncer.url, prepare_threshold=None)
    assert isinstance(s, PostgresStore)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def test_prepared_statements_break_it_unless_turned_off(pgbouncer: PgBouncer) -> None:
    """Statements used more than psycopg's threshold (5) get prepared; behind a transaction pooler the
    next transaction may land on a server connection that never saw them."""
    import asyncio
    import uuid

    from mofa_sdk.errors import PersistenceError

    async def hammer(**options: Any) -> list[BaseException]:
        s = await connect_store(pgbouncer.url, max_connections=4, **options)
        tenant = uuid.uuid4()

        async def many() -> None:
            for _ in range(30):
                assert await s.list_providers(tenant) == []

        try:
            results = await asyncio.gather(*(many() for _ in range(8)), return_exceptions=True)
        finally:
            await s.close()
        return [r for r in results if r is not None]

    failures = await hammer()  # the default: prepared after 5 uses
    assert failures and all(isinstance(f, PersistenceError) for f in failures)
    assert any("prepared statement" in str(f) for f in failures)
    assert await hammer(prepare_threshold=None) == []
