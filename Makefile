VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= local,server,serve,test

.PHONY: setup chat test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

chat: setup
	$(VENV)/bin/mofa chat

test: setup
	VENV=$(VENV) bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
