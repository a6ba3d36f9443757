# journey-fanout: every target sets up .venv itself, on the Lambda runtime's Python minor (template.yaml's
# Globals Runtime names it; scripts/runtime-python finds that interpreter). It and make are all a fresh
# machine needs.
PYTHON ?= $(shell scripts/runtime-python)
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(shell sed -n 's/^ *Runtime: python\([0-9.]*\)$$/\1/p' template.yaml | head -1)
STAMP := $(VENV)/.installed-python$(RUNTIME)

.PHONY: demo test test-slow test-all lint security sam bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || scripts/runtime-python
	$(PYTHON) -m venv --clear $(VENV)
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
## template carries a written reason. Offline: no guideline download. checkov cannot read Fn::ForEach
## (it reports a parsing error, checks nothing and exits 0), so it reads the expanded template.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet 'checkov==3.3.30'

EXPANDED := build/template.expanded.json
security: $(CHECKOV) $(STAMP)
	$(PY) scripts/expand_template.py template.yaml $(EXPANDED)
	BC_SKIP_MAPPING=TRUE $(CHECKOV) -f $(EXPANDED) --framework cloudformation --quiet --compact --skip-download

## sam: what `sam deploy` would ship, checked: `sam validate --lint` and `sam build` (the arm64 layer, in
## process: no container), then scripts/check_built_layers.py over the build. SAM CLI has its own venv
## (it pins many packages); its Python workflow builds with the runtime's interpreter, put first on PATH.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_ENV := PATH="$(dir $(PYTHON)):$$PATH" SAM_CLI_TELEMETRY=0
$(SAM):
	$(PYTHON) -m venv --clear $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet 'aws-sam-cli==1.170.0'

sam: $(SAM) $(STAMP)
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_ENV) $(SAM) build
	$(PY) scripts/check_built_layers.py .aws-sam/build/template.yaml

## bench: the benchmarks (not part of the tests); prints a table and writes bench/out/results.json
bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv-checkov $(SAM_VENV) .aws-sam $(EXPANDED) .pytest_cache .ruff_cache .mypy_cache .hypothesis
