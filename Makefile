# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config.example.yaml

.PHONY: run demo test lint typecheck unit check bench bench-store bench-log clean

$(BIN)/consent-gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

## run: set up and serve the gateway on the example config (SQLite under ./data)
run: $(BIN)/consent-gateway
	$(BIN)/consent-gateway serve --config $(CONFIG)

## demo: a shop page whose unmodified tags go through the gateway, local fake vendors,
## and the admin page (demo/run.py prints the addresses)
demo: $(BIN)/consent-gateway
	$(BIN)/python demo/run.py

## test: set up with the dev extras; ruff, mypy strict, pytest
test: $(VENV)/.dev lint typecheck unit

# IAB's reference decoders (npm), for the differential tests of the consent-signal decoders
INTEROP := tests/interop
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	npm ci --prefix $(INTEROP) --no-audit --no-fund --loglevel=error
	@touch $@

# Real vendor SDKs (npm), served unmodified to the router's browser tests (tests/router)
SDKS := tests/router/sdks
$(SDKS)/node_modules/.installed: $(SDKS)/package.json $(SDKS)/package-lock.json
	npm ci --prefix $(SDKS) --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev $(INTEROP)/node_modules/.installed $(SDKS)/node_modules/.installed
	$(BIN)/pytest -n auto --dist loadfile

check: $(BIN)/consent-gateway
	$(BIN)/consent-gateway check --config $(CONFIG)

## bench: what enforcement costs against references it starts itself (needs wrk)
bench: $(VENV)/.dev $(INTEROP)/node_modules/.installed
	$(BIN)/python bench/run.py

## bench-store: decisions/s with a valid cookie and with consent-store lookups, both backends
bench-store: $(VENV)/.dev
	$(BIN)/python bench/store.py

## bench-log: decision-log records/s to SQLite and PostgreSQL (one instance, four at once)
bench-log: $(VENV)/.dev
	$(BIN)/python bench/decision_log.py

clean:
	rm -rf $(VENV) data .mypy_cache .pytest_cache .ruff_cache .hypothesis $(INTEROP)/node_modules $(SDKS)/node_modules
