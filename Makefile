# `make run`: install into .venv, create the account `default` on first start, serve on :8080,
#   and once it is up print the clickstream page's URL and a curl line to try (scripts/run).
# `make test`: install into .venv (with test extras), lint, type-check (mypy), install what
#   the tests need besides (scripts/test-deps: chromium, nginx, openssl; scripts/with-postgres: PostgreSQL), run every test.
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
	$(BIN)/python scripts/run

test: $(STAMP)
	scripts/test-deps
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
