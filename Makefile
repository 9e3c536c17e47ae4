# `make study` and `make test` each create .venv when needed, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The tests exercise every optional extra (Ray against a real local instance, MLflow's own client, OpenCV,
# pandas, Parquet): installed here so that CI runs those tests instead of skipping them.
TEST_EXTRAS := dev,pandas,mlflow,opencv,ray,parquet,timm,advise
# The classic study; tests/test_online.py runs exactly these arguments. Options of your own go in ARGS:
#   make study ARGS="--data imagefolder:PATH --weights none"
STUDY_ARGS := study --preset seed
ARGS ?=

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
	@$(BIN)/resizelab $(STUDY_ARGS) $(ARGS); status=$$?; \
	echo "resizelab is installed in $(VENV): 'source $(VENV)/bin/activate' puts resizelab on PATH (or run $(BIN)/resizelab); options for this study: make study ARGS='--data imagefolder:PATH'" >&2; \
	exit $$status

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# The inner loop: the same checks, without the slow fault and integration tests (target: within 2 minutes on 2
# cores, ruff and lint-imports included; measured on the idle machine: 118 s, 686 tests, pytest 110 s). Whole
# pipelines (a study, a bench, a findings or serve study) and every test over ~2 s are marked slow. The costliest left,
# from `pytest -m "not slow" --durations=45` (all under 2 s): test_serve's stored-runs fixture (five trainings,
# 2.5 s once), load_runs' store fixture (test_api), the boundary fuzzers (test_boundary), a sweep whose every run
# failed (test_cli), the replay's quality check (test_advise), probing a stored run (test_checkpoints).
# Every test has a deadline (pytest-timeout, pyproject's `timeout`), so a hang fails instead of stalling.
test-fast: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/resizelab bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
