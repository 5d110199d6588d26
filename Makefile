# mtlrank: `make run` runs the pipeline end to end on the bundled census data;
# `make test` runs every test; `make test-fast` leaves out the real-pipeline ones;
# `make lint` checks lint and format. All create the environment first if missing.
SPEC ?= census
HOME_DIR ?= .mtlrank
PYTEST_ARGS ?=
# Test processes (pytest-xdist): the real-pipeline tests are mostly
# single-threaded Python, so two workers use both cores. Tests that share a
# session pipeline run are kept on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
# Python 3.10 is pinned by TFX 1.16; prefer pyenv's build, else any python3.10.
PYTHON ?= $(shell (command -v pyenv >/dev/null && ls -d "$$(pyenv root)"/versions/3.10*/bin/python 2>/dev/null | tail -n 1) || command -v python3.10)
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
ENV_STAMP := .venv/.mtlrank-synced
# `make env UV_SYNC_FLAGS=--all-extras` also installs the optional `kubeflow`
# (Vertex compiler) and `airflow` (scheduler) extras; CI does.
UV_SYNC_FLAGS ?=

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: env run test test-fast lint format clean

env: $(ENV_STAMP)

$(ENV_STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen $(UV_SYNC_FLAGS) --python "$(PYTHON)"
	@touch $@

run: env
	$(UV) run --frozen mtlrank run --spec $(SPEC) --home $(HOME_DIR) \
	  --summary-json $(HOME_DIR)/$(SPEC)-summary.json --report $(HOME_DIR)/$(SPEC)-report.html

test: env
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The quick set, for the edit-test loop: no real TFX pipeline runs, no heavy
# TensorFlow/Beam tests (`make test` runs those too).
test-fast: env
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadgroup -m "not pipeline and not slow" $(PYTEST_ARGS)

lint: env
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: env
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

clean:
	rm -rf $(HOME_DIR)
