# Two commands: `make run` (set up + serve the demo) and `make test` (set up + run every test).
# Set-up is idempotent: it re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
# `make run` needs only the runtime dependencies: the dev tools and PySpark (~300 MB to unpack)
# are installed by `make setup`/`make test`, not on the way to the first served request.
RUN_STAMP := $(VENV)/.stamp-run
# The CPU build of PyTorch must be installed before sentence-transformers, or pip pulls a multi-GB
# CUDA build. Elsewhere, point TORCH_INDEX at https://download.pytorch.org/whl/cpu.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
# Extra arguments for `tailor demo`, e.g. `make run DEMO_ARGS="--port 8080"`.
DEMO_ARGS ?=

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/tailor demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
