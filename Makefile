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
# cores, ruff and lint-imports included; measured on the idle machine on 2026-12-03: 103 s and 105 s, 691 tests,
# pytest 96-98 s; 126 s once, started the moment the full suite ended). Whole pipelines (a study, a bench, a findings
# or serve study) are marked slow. The costliest left, from `pytest -m "not slow" --durations=25`: ResNet learns the
# synthetic task (test_train, 6 s: the one test in this tier where a model must learn), importing resizelab loads
# neither torch nor pandas and `train` is the engine's (test_package, fresh interpreters, 3.5 s and 2.6 s), MLflow
# export (test_tracking, 3.2 s), test_serve's stored-runs fixture (2.3 s once), then tests under 2 s.
# Every test has a deadline (pytest-timeout, pyproject's `timeout`), so a hang fails instead of stalling.
test-fast: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/resizelab bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
