VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= local,serve,server,test

.PHONY: setup chat test lint bench clean

setup:
	VENV=$(VENV) EXTRAS=$(EXTRAS) bash scripts/setup.sh

chat: setup
	$(VENV)/bin/mofa chat

test: setup
	VENV=$(VENV) bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check src tests examples bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy examples
	$(VENV)/bin/lint-imports  # the import rules: [tool.importlinter] in pyproject.toml

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
