# The two commands of the README:
#   make demo   creates .venv, generates the synthetic multimodal dataset, trains and prints metrics
#   make test   creates .venv and runs the test suite (real data from ../shared/data)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.graphrec-installed

.PHONY: setup demo test lint bench docs test-dgl clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/graphrec quickstart --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py

docs: $(STAMP)
	$(BIN)/typer --app full_app graphrec.cli utils docs --name graphrec --output docs/cli.md
	sed -i "s/&#x27;/'/g" docs/cli.md

# DGL on PyPI stops at 2.1.0, which needs torch <= 2.2.1: its own environment (.venv-dgl), see docs/dgl.md.
test-dgl:
	bash scripts/test-dgl.sh

clean:
	rm -rf $(VENV) .venv-dgl runs .pytest_cache
