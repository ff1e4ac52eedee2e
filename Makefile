# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export FLASK_APP := app

.PHONY: run test test-sqlite test-postgresql lint format install clean system-deps system-deps-test

# Debian packages: xmlsec1 (SAML signatures, needed to run) and chromium (browser tests).
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || (command -v sudo >/dev/null && echo sudo apt-get))
define apt_install
	@missing=""; for cmd in $(1); do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$(APT)" ]; then echo "installing:$$missing"; $(APT) update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $$missing >/dev/null; \
	  else echo "please install the Debian packages:$$missing"; fi; fi
endef

system-deps:
	$(call apt_install,xmlsec1)

system-deps-test:
	$(call apt_install,xmlsec1 chromium)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: install, migrate the SQLite database, seed the demo account, serve on :5000
run: $(STAMP) system-deps
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo
	SCHEDULER_ENABLED=$${SCHEDULER_ENABLED:-1} $(BIN)/flask run --host 127.0.0.1 --port 5000

## test: the whole suite on SQLite, then on PostgreSQL when one answers on 127.0.0.1:5432
test: test-sqlite test-postgresql

test-sqlite: $(STAMP) system-deps-test
	$(BIN)/pytest

test-postgresql: $(STAMP) system-deps-test
	TEST_DATABASE=postgresql $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

## bench: the SCIM benchmark on a fresh SQLite database (bench/README.md; PostgreSQL: bench/run.sh --postgres)
.PHONY: bench
bench: $(STAMP)
	bench/run.sh
