"""Fixtures of the CLI tests: a database URL per backend, a fresh identity per test, the fault server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.helpers import Cli
from tests.llm.fault_server import FaultServer


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url, uuid.uuid4(), uuid.uuid4())


@pytest.fixture
async def fault() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv
