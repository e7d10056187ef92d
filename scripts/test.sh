#!/usr/bin/env bash
# The test command (make test): lint, types, import rules, then the whole suite against a real PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
MOFA_TEST_DATABASE_URL=$(bash scripts/ensure_postgres.sh)
export MOFA_TEST_DATABASE_URL
echo "PostgreSQL for tests: $MOFA_TEST_DATABASE_URL"
"$VENV/bin/ruff" check src tests examples bench scripts
"$VENV/bin/mypy"  # the files of pyproject.toml: src, tests, bench, scripts
"$VENV/bin/mypy" examples  # a run of its own: examples/_common.py and bench/_common.py are both module _common
"$VENV/bin/lint-imports"  # the import rules ([tool.importlinter] in pyproject.toml, docs/architecture.md)
"$VENV/bin/python" scripts/gen_postgres_init.py --check
exec "$VENV/bin/pytest" -q "$@"
