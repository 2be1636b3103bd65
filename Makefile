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
	$(BIN)/pip install --quiet -e '.[test,dev,bench]'
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

# every benchmark at the sizes of README's tables (about 40 minutes on 2 cores), then the report
bench: setup
	$(BIN)/python -m benchmarks.kernel_routes --routes 20000 --json
	$(BIN)/python -m benchmarks.bfd --trials 50 --route-trials 10 --json
	$(BIN)/python -m benchmarks.bfd --only cost --sessions 100 --seconds 60 --json
	$(BIN)/python -m benchmarks.rib --routes 100000 --peers 4 --candidates 1 --json
	$(BIN)/python -m benchmarks.desired --nodes 600 --peers 50 --json
	$(BIN)/python -m benchmarks.mesh --peers 100,300,599 --compare --role passive --idle 60 --json
	$(BIN)/python -m benchmarks.mesh --peers 100,300,599 --engine bgpd-stock --idle 60 --json
	$(BIN)/python -m benchmarks.mesh --peers 100,300,599 --compare --role active --idle 10 --json
	$(BIN)/python -m benchmarks.mesh --peers 100,300,599 --compare --role mesh --idle 10 --json
	$(BIN)/python -m benchmarks.mesh --peers 100,300,599 --compare --storm --idle 10 --json
	$(BIN)/python -m benchmarks.reflector --clients 300,599 --compare --json
	$(BIN)/python -m benchmarks.propagation --samples 200 --compare --json
	$(BIN)/python -m benchmarks.services --services 1000 --rate 50 --seconds 30 --json
	$(BIN)/python -m benchmarks.ingest --routes 20000 --compare --profile --json
	$(BIN)/python -m benchmarks.restart --compare --json
	$(BIN)/python -m benchmarks.datastore --nodes 600,5000 --compare --typha
	$(BIN)/python -m benchmarks.report --readme docs/benchmarks.md

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
