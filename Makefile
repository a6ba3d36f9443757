# journey-fanout: every target sets up .venv itself (Python >= 3.11 and make are all a fresh machine needs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow test-all lint security bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("journey-fanout needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the sample files through every destination on the local stack, one results table
demo: $(STAMP)
	$(VENV)/bin/fanout demo

## test: lint, then the default test suite (unit + integration against the local stack; slow suites skipped)
test: $(STAMP) lint
	$(PY) -m pytest -m "not slow" -q

## test-slow: only the slow suites (large files, fault storms)
test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

## test-all: everything, as CI runs it
test-all: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/mypy

## security: checkov over template.yaml (its own venv: checkov pins many packages); every skip in the
## template carries a written reason. Offline: no guideline download.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet 'checkov==3.3.30'

security: $(CHECKOV)
	BC_SKIP_MAPPING=TRUE $(CHECKOV) -f template.yaml --framework cloudformation --quiet --compact --skip-download

## bench: the benchmarks (not part of the tests); prints a table and writes bench/out/results.json
bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv-checkov .pytest_cache .ruff_cache .mypy_cache .hypothesis
