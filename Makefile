# make run | make test | make bench | make lint | make pictures — each creates .venv (and installs the test services) when missing.
# make lint: ruff, mypy, the import-linter contracts (pyproject.toml), and checkov on the Bicep
# (infra/checkov-skips.txt says what is accepted, and why).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := tools/node_modules/.bin/azurite-table
CHROMIUM := /usr/bin/chromium
CHECKOV := .venv-checkov/bin/checkov
PROD := .venv-prod/.installed

.PHONY: run test lint bench mutate pictures reset clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(AZURITE): tools/package.json tools/package-lock.json
	npm ci --prefix tools --no-audit --no-fund --loglevel=error
	touch $(AZURITE)

# The browser tests drive Debian's chromium (Playwright's own download cannot be reached). Installed when missing
# and root (the test machines are); otherwise the tests say how, and fail in CI.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing: sudo apt-get install chromium (the browser tests need it)" >&2; fi

# The cold-start benchmark imports the app with only what Azure installs (requirements.txt).
$(PROD): requirements.txt
	$(PYTHON) -m venv .venv-prod
	.venv-prod/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(PROD)

# checkov has its own venv: its pins (packaging, jsonschema, boto3) must not reach the test tools.
$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV)

# `make run HOSTS=2`: two local hosts of the app, each its own process, on one Azurite (installed when missing).
run: $(STAMP) $(if $(filter-out 1,$(HOSTS)),$(AZURITE))
	$(PY) dev/host/run.py

lint: $(STAMP) $(CHECKOV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) dev/checkov_bicep.py

# The tests start Azurite (and the simulator, the Key Vault fake, the local host) themselves and stop them.
test: $(STAMP) $(AZURITE) $(CHROMIUM) lint
	$(PY) -m pytest

bench: $(STAMP) $(AZURITE) $(PROD)
	$(PY) -m bench

# The pictures in docs/images/, renewed by the browser tests themselves from the very views they check
# (tests/browser/test_portal*.py with PICTURES=1); a picture the docs show that no test took fails the run.
pictures: $(STAMP) $(AZURITE) $(CHROMIUM)
	PICTURES=1 $(PY) -m pytest -q -p no:cacheprovider $(sort $(wildcard tests/browser/test_portal*.py))

# Mutation testing of the isolation-critical modules (pyproject.toml [tool.mutmut]): the score and every survivor.
# Not part of `make test`: it takes a long while (its results are kept in mutants/, so a second run is quicker).
mutate: $(STAMP)
	$(PY) dev/mutate.py

# The ticket store, the token bundle and the ServiceNow simulator's state in LOCAL_DATA_DIR, together (not while
# a `make run` holds the folder).
reset:
	$(PYTHON) dev/host/run.py --reset

clean:
	rm -rf $(VENV) .venv-checkov .venv-prod .local .mypy_cache .pytest_cache .ruff_cache .hypothesis tools/node_modules mutants
