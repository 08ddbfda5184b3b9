# Two commands for a new user: `make run` and `make test`. Both create .venv when missing.
# Python 3.13 is preferred (the MongoDB wire emulator needs it); any Python >= 3.11 works.
PYTHON ?= $(shell for p in python3.13 "$$(PYENV_VERSION=3.13.0 pyenv which python3 2>/dev/null)" python3; do \
	[ -n "$$p" ] && "$$p" -c 'import sys' 2>/dev/null && { command -v "$$p"; break; }; done)
# An interpreter named on the command line (`make test PYTHON=/usr/bin/python3.11`) gets a
# venv of its own, .venv-python3.11, so it is really the one tested and .venv stays as it is.
ifeq ($(origin PYTHON),command line)
VENV := .venv-$(notdir $(PYTHON))
else
VENV := .venv
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/momentum

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core
	$(BIN)/python -m pytest -q

# The full benchmark (several minutes): bench/results/results.{json,md} and latency.png.
bench: $(STAMP)
	$(BIN)/python -m bench

# Small loads and store, under a minute; `make test` runs it too (tests/test_bench.py).
bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

clean:
	rm -rf .venv .venv-* .pytest_cache .mypy_cache .ruff_cache
