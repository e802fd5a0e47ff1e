# make run | make test | make bench | make lint — each creates .venv (and installs the test services) when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := tools/node_modules/.bin/azurite-table

.PHONY: run test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(AZURITE): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

run: $(STAMP)
	$(PY) dev/run.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The tests start Azurite (and the simulator, the Key Vault fake, the local host) themselves and stop them.
test: $(STAMP) $(AZURITE) lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .local .mypy_cache .pytest_cache .ruff_cache .hypothesis tools/node_modules
