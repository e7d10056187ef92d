"""The public surface: every name a package exports resolves, and what SQLite users run loads no PostgreSQL driver."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["mofa_sdk", "mofa_sdk.llm", "mofa_sdk.persistence", "mofa_sdk.sync",
                                     "mofa_sdk.server", "mofa_sdk.errors", "mofa_sdk.entities"])
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{package}.__all__ names something twice"
    missing = [n for n in names if not hasattr(module, n)]
    assert missing == []


def test_the_cli_and_the_sqlite_store_do_not_load_psycopg() -> None:
    """psycopg and libpq cost about 10 MB of memory: loaded only when PostgreSQL is used."""
    imports = ("mofa_sdk.cli._app, mofa_sdk.persistence, mofa_sdk.llm; "
               "from mofa_sdk.persistence import SqliteStore, connect_store")
    assert _loaded(imports, ("psycopg", "psycopg_pool")) == "[]"


def test_the_run_engine_loads_no_web_framework() -> None:
    """import-linter checks the static imports; this checks what importing ``mofa_sdk.server.runs`` really loads
    (the package's ``create_app`` comes on first use, not with the package)."""
    assert _loaded("mofa_sdk.server.runs", ("fastapi", "starlette", "uvicorn")) == "[]"


def _loaded(imports: str, packages: tuple[str, ...]) -> str:
    """Which of ``packages`` a fresh interpreter has loaded after ``import sys, <imports>`` (a printed list)."""
    code = f"import sys, {imports}; print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r}))"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
