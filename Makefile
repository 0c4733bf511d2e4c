# The two commands of the README: `make run` and `make test`. Everything else is theirs to call.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Local development only; production sets its own secrets (FIELDING_JWT_SECRET and
# FIELDING_SYSTEM_JWT_SECRET): `run` and `serve` refuse this one outside development.
export FIELDING_JWT_SECRET ?= local-development-secret-change-me-0123456789

.PHONY: run test services-up services-down bench schemas chaos docs

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

# The worker and the HTTP API (on API_PORT, 8080) together; Ctrl-C stops both. In development:
# the secret above is taken, and the system key defaults to it.
run: export FIELDING_ENVIRONMENT ?= development
run: services-up
	$(BIN)/fielding-worker migrate
	METRICS_PORT=9465 $(BIN)/fielding-worker serve & serve=$$!; trap "kill $$serve 2>/dev/null" EXIT; \
	$(BIN)/fielding-worker run

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# The checked-in JSON Schema of every message, and the API documents (docs/).
schemas: $(VENV)/.installed
	$(BIN)/python -m schemas.generate
	$(BIN)/python -m worker.entrypoints.api_documents

# The documentation site (mkdocs.yml, docs/), served on localhost:8000; the unit tests build it.
docs: $(VENV)/.installed
	$(BIN)/mkdocs serve

# The broker as a deployment runs it (the optimising JIT): `up` restarts a fast-start one.
bench: export LOCAL_KAFKA_JIT ?= optimising
bench: services-up
	$(BIN)/python -m bench.run

# The long chaos run (CI runs a 40-second one): CHAOS_SECONDS of load with SIGKILLs every
# second or two, frozen workers, and the broker and Postgres killed; prints the tally.
CHAOS_SECONDS ?= 600
chaos: services-up
	FIELDING_CHAOS_SECONDS=$(CHAOS_SECONDS) $(BIN)/python -m pytest tests/faults/test_chaos.py \
		-p no:cacheprovider -s -q --timeout=0
