"""Fixtures of the CLI tests: a fresh identity per test (db_url and fault: tests/support, via tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.cli import Cli


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url, uuid.uuid4(), uuid.uuid4())

