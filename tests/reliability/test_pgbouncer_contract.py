"""PgBouncer in transaction pooling mode: why the store turns server-side prepared statements off there.

The whole store contract runs through PgBouncer too: "pgbouncer" is one of the stores of the contract's
``store`` fixture (tests/support/stores.py), a PostgresStore with ``prepare_threshold=None``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mofa_sdk.persistence import connect_store
from tests.support.pgbouncer import PgBouncer


@pytest.fixture(scope="session")
def pgbouncer(pg_url: str) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(pg_url).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


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
