# The two commands of the README:
#   make demo   creates .venv, generates the synthetic multimodal dataset, trains and prints metrics
#   make test   creates .venv and runs the test suite (real data from ../shared/data)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.graphrec-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/graphrec quickstart --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/convert.py

clean:
	rm -rf $(VENV) runs .pytest_cache
