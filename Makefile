# `make run`: install into .venv, create the account `default` on first start, serve on :8080.
# `make test`: install into .venv (with test extras), lint, type-check (mypy) and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench-ingest bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/trackway accounts create default --if-missing
	$(BIN)/trackway serve --host $${TRACKWAY_HOST:-127.0.0.1} --port $${TRACKWAY_PORT:-8080}

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	scripts/with-postgres $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	scripts/with-postgres bench/run --postgres

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
