# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export FLASK_APP := app

.PHONY: run test test-sqlite test-postgresql lint format install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: install, migrate the SQLite database, seed the demo account, serve on :5000
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo
	SCHEDULER_ENABLED=$${SCHEDULER_ENABLED:-1} $(BIN)/flask run --host 127.0.0.1 --port 5000

## test: the whole suite on SQLite, then on PostgreSQL when one answers on 127.0.0.1:5432
test: test-sqlite test-postgresql

test-sqlite: $(STAMP)
	$(BIN)/pytest

test-postgresql: $(STAMP)
	TEST_DATABASE=postgresql $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
