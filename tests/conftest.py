"""The suite's fixtures, registered once for every folder: they live in tests/support and are re-exported here.

Tests import helpers from ``tests.support``, never from a conftest or another test module
(tests/test_layout.py checks it). This file holds only the CI rule and two one-line identities."""

from __future__ import annotations

import uuid
from collections.abc import Generator

import pytest

from tests.support.fault_server import fault
from tests.support.llama_server import llama_server
from tests.support.postgres import IN_CI, fresh_pg_url, pg_admin_url, pg_schema_factory, pg_url
from tests.support.roles import app_role, make_role, secured
from tests.support.stores import db_store, db_url, each_store, sqlite_path

__all__ = [
    "app_role",
    "db_store",
    "db_url",
    "each_store",
    "fault",
    "fresh_pg_url",
    "llama_server",
    "make_role",
    "pg_admin_url",
    "pg_schema_factory",
    "pg_url",
    "secured",
    "sqlite_path",
    "tenant",
    "user",
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """In CI a skip is a failure, whatever raised it: what CI did not run, it did not test."""
    report = yield
    if IN_CI and isinstance(report, pytest.TestReport) and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run everything: {report.longrepr}"
    return report


@pytest.fixture
def tenant() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def user() -> uuid.UUID:
    return uuid.uuid4()
