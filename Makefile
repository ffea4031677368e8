# One venv in .venv; every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/cssci demo

test: $(STAMP)
	$(BIN)/ruff check cssci_platform cssci_platform_tests benchmarks
	$(BIN)/mypy cssci_platform/lib
	$(BIN)/pytest -n 2 --dist loadgroup -q

ui: $(STAMP)
	$(BIN)/cssci ui

bench: $(STAMP)
	$(BIN)/python benchmarks/radiomics_overhead.py

clean:
	rm -rf .cssci
