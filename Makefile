# Two commands on a fresh machine: `make serve` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000
BENTO_VERSION ?= 0.1.0
# `make test` can spread the test files over processes (pytest-xdist; a file's tests stay in one, with its
# servers): TEST_PROCESSES=2 ran the suite in 18.5 min instead of about 28 on two cores, but some tests still
# depend on the order they run in (docs/performance.md, "The test suite's time"), so the default runs them in one.
TEST_PROCESSES ?= 0
export BENTOML_DO_NOT_TRACK := true

.PHONY: install serve demo-models test test-fast lint docs reports bento audit lock clean

# Each stamp marks a set of pyproject.toml's extras installed into $(VENV) at the versions of requirements.lock;
# `make install` is all of them (docs/install.md).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(BIN)/.runtime: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[server]'
	touch $@

$(BIN)/.train: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[server,train]'
	touch $@

$(BIN)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[server,train,dev]'
	touch $@

install: $(BIN)/.installed

## Serve on embedded defaults with the service's packages only; the first time, when the model store lacks the
## demo models, installs the training packages too and trains and imports them (demo-models).
serve: $(BIN)/.runtime
	@# INFERENCE_MODELS_FILE=none serves what the store holds: no demo models are trained then.
	@[ "$${INFERENCE_MODELS_FILE:-}" = none ] || $(BIN)/python import_models.py --demo --check \
		|| $(MAKE) --no-print-directory demo-models
	$(BIN)/bentoml serve service:Inference --host $(HOST) --port $(PORT)

## Train and import the demo models (v1.0.0) of each family the model store lacks.
demo-models: $(BIN)/.train
	$(BIN)/python import_models.py --demo

## Lint and type checks, then the whole test suite (starts real servers; builds a Bento).
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

## Unit and in-process tests only.
test-fast: install
	$(BIN)/python -m pytest -m "not server and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Known vulnerabilities in the locked dependencies (says plainly when the vulnerability data is out of reach).
audit: install
	$(BIN)/python -m deploy.audit

docs: install
	$(BIN)/python -m tools.docs

## Evaluation reports of the pinned versions into docs/reports (retrains the demo models into a scratch folder).
reports: install
	rm -rf .reports && for family in skills intent textpair; do $(BIN)/python -m train $$family --version v1.0.0 --out .reports || exit 1; done
	$(BIN)/python -m train.publish --artifacts .reports

## The image's Python packages: requirements/runtime.in locked into requirements/runtime.txt, every transitive
## package pinned, at the versions of requirements.lock (needs PyPI; bentofile.yaml installs the result).
lock: install
	$(BIN)/uv pip compile requirements/runtime.in --constraint requirements.lock --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --annotation-style line -o requirements/runtime.txt

## A versioned Bento with the models pinned in bentofile.yaml.
bento: install
	$(BIN)/python import_models.py --demo
	$(BIN)/python -m tools.pins          # bentofile.yaml's model list from models.env
	$(BIN)/bentoml build --version $(BENTO_VERSION)

clean:
	rm -rf $(VENV) artifacts .reports .pytest_cache .ruff_cache .mypy_cache
