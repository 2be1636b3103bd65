# The two commands of README.md: `make lab` (set up, run the main demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps lab lab-down demo test test-fast lint bench clean

setup: system-deps $(VENV)/.installed

system-deps:
	bash scripts/install-system-deps

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

lab: setup
	$(BIN)/python -m integration_tests.lab up --nodes 3

lab-down: setup
	$(BIN)/python -m integration_tests.lab down

demo: setup
	$(BIN)/python -m integration_tests.demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --strict ribs

test: lint
	$(BIN)/pytest

test-fast: lint
	$(BIN)/pytest -m "not slow"

bench: setup
	$(BIN)/python -m benchmarks.kernel_routes --routes 20000 --json

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
