# `make study` and `make test` each create .venv when needed, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The classic study; tests/test_online.py runs exactly these arguments.
STUDY_ARGS := study --preset seed

.PHONY: setup study test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev,pandas,mlflow]'
	touch $(STAMP)

setup: $(STAMP)

study: $(STAMP)
	$(BIN)/resizelab $(STUDY_ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/resizelab bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
