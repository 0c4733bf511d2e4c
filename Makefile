# The two commands of the README: `make run` and `make test`. Everything else is theirs to call.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Local development only; production sets its own secret.
export FIELDING_JWT_SECRET ?= local-development-secret-change-me-0123456789

.PHONY: run test services-up services-down bench schemas

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

services-up: $(VENV)/.installed
	$(BIN)/python scripts/services.py up

services-down: $(VENV)/.installed
	$(BIN)/python scripts/services.py down

# The worker and the HTTP API (on API_PORT, 8080) together; Ctrl-C stops both.
run: services-up
	$(BIN)/fielding-worker migrate
	$(BIN)/fielding-worker serve & serve=$$!; trap "kill $$serve 2>/dev/null" EXIT; \
	$(BIN)/fielding-worker run

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# The checked-in JSON Schema of every message, and the API documents (docs/).
schemas: $(VENV)/.installed
	$(BIN)/python -m schemas.generate
	$(BIN)/python -m worker.entrypoints.api_documents

bench: services-up
	$(BIN)/python -m bench.run
