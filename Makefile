# Two commands for a new user: `make run` and `make test`. Both create .venv when missing.
# The interpreter: tools/pick-python.sh picks Python 3.13 if any is found (on PATH, any 3.13.x
# pyenv has, or where installers put it; the MongoDB emulator the tests use needs it), else the
# newest Python >= 3.11, and says which and why when .venv is made. Name another with
# `make test PYTHON=/usr/bin/python3.11`.
PYTHON ?=
# An interpreter named on the command line (`make test PYTHON=/usr/bin/python3.11`) gets a
# venv of its own, .venv-python3.11, so it is really the one tested and .venv stays as it is.
ifeq ($(origin PYTHON),command line)
VENV := .venv-$(notdir $(PYTHON))
else
VENV := .venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run dev test lint bench bench-smoke clean

$(BIN)/python:
	@python='$(PYTHON)'; \
	if [ -z "$$python" ]; then python=$$(sh tools/pick-python.sh) || exit 1; \
	else version=$$("$$python" -c 'import platform; print(platform.python_version())') || exit 1; \
		echo "Using Python $$version, $$python: named with PYTHON=."; fi; \
	echo "Making $(VENV)"; "$$python" -m venv $(VENV)

# The app and the development tools: pytest, ruff, mypy, the MongoDB emulator on 3.13.
INSTALL := $(BIN)/python -m pip install --quiet -e '.[dev]'

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(INSTALL)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/momentum

# Installs the development tools again even when .venv looks up to date (a venv made by hand,
# or made before a tool was added), then says what to run.
dev: $(BIN)/python
	$(INSTALL)
	touch $(STAMP)
	@echo "Ready ($$($(BIN)/python --version)): make run (or $(BIN)/momentum chat), make test, make lint."

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core

test: lint
	$(BIN)/python -m pytest -q

# The full benchmark (several minutes): bench/results/results.{json,md} and latency.png.
bench: $(STAMP)
	$(BIN)/python -m bench

# Small loads and store, under a minute; `make test` runs it too (tests/test_bench.py).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

clean:
	rm -rf .venv .venv-* .pytest_cache .mypy_cache .ruff_cache
