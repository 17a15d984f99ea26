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
# pip installs PyTorch (it takes the CPU wheel from this machine's disk, or TORCH_INDEX); uv
# installs everything else: in parallel, from its cache, without compiling every module's
# bytecode up front (Python compiles what it imports). Measured on a fresh clone: the install
# went from ~113 s to ~15 s (docs/SPEED.md). TORCH_SPEC is repeated to uv so it never replaces
# the CPU build.
UV_SPEC ?= uv==0.13.9
UV := $(BIN)/uv pip --quiet
# Extra arguments for `tailor demo`, e.g. `make run DEMO_ARGS="--port 8080"`.
DEMO_ARGS ?=

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile "$(UV_SPEC)"
	$(BIN)/python -m pip install --quiet --no-compile "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(UV) install --python $(BIN)/python -e . "$(TORCH_SPEC)"
	touch $(RUN_STAMP)

# The tests start many Python processes (gateways, workers, CLI runs): compile the whole venv's
# bytecode once here, in parallel, or where PYTHONDONTWRITEBYTECODE is set (this machine sets it)
# every process compiles every module it imports again (~20 s per `tailor` start under load).
# `uv --compile-bytecode` is not enough: it compiles only the packages of its own install, not
# those the run step installed. Files that cannot compile on this Python (a Python 3.12 test file
# inside torch) are skipped, as pip skips them.
$(STAMP): $(RUN_STAMP)
	$(UV) install --python $(BIN)/python -e ".[dev,spark]" "$(TORCH_SPEC)"
	$(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_path('purelib'), quiet=2, workers=0)"
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
