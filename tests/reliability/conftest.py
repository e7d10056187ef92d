"""Fixtures of the reliability suite: throwaway clusters (the row checks are in tests/support/rows.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg_cluster import PgCluster


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own (trust auth), free to restart or stop."""
    c = PgCluster().start()
    try:
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="session")
def pw_cluster() -> Iterator[PgCluster]:
    """A cluster that only accepts scram-sha-256 password logins (password ``s3cret-pw``)."""
    c = PgCluster(password="s3cret-pw").start()
    try:
        yield c
    finally:
        c.destroy()
