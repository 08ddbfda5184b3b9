# Two commands for a new user: `make run` and `make test`. Both create .venv when missing.
# The interpreter: Python 3.13 if any is found (on PATH, or any 3.13.x pyenv has; the MongoDB
# wire emulator the tests use needs it), else the newest Python >= 3.11 on PATH. Name another
# with `make test PYTHON=/usr/bin/python3.11`.
PYTHON ?= $(shell for p in python3.13 $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3 2>/dev/null | sort -V -r) \
	python3.14 python3.12 python3.11 python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v "$$p"; break; }; done)
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
	@[ -n "$(PYTHON)" ] || { echo "No Python >= 3.11 found: install one, or name it with PYTHON=..."; exit 1; }
	@echo "Making $(VENV) with $(PYTHON) ($$($(PYTHON) -c 'import platform; print("Python", platform.python_version())'))"
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/momentum

# The venv with the development tools (pytest, ruff, mypy, the MongoDB emulator on 3.13).
dev: $(STAMP)
	@echo "Ready: $(BIN)/momentum, make test, make lint ($$($(BIN)/python --version))."

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
