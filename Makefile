# `make study` and `make test` each create .venv when needed, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The tests exercise every optional extra (Ray against a real local instance, MLflow's own client, OpenCV,
# pandas, Parquet): installed here so that CI runs those tests instead of skipping them.
TEST_EXTRAS := dev,pandas,mlflow,opencv,ray,parquet,advise
# The classic study; tests/test_online.py runs exactly these arguments.
STUDY_ARGS := study --preset seed

.PHONY: setup study test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[pandas]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[$(TEST_EXTRAS)]'
	touch $(TEST_STAMP)

setup: $(STAMP)

study: $(STAMP)
	$(BIN)/resizelab $(STUDY_ARGS)

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The inner loop: the same checks, without the slow fault and integration tests (within 2 minutes on 2 cores).
test-fast: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/resizelab bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
