# Vigil: two commands on a fresh Debian machine with Python 3.11:
#   make demo   - create .venv, install, import the shipped real incident, investigate it
#   make test   - install test dependencies and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
export VIGIL_HOME ?= $(CURDIR)/.vigil

.PHONY: demo test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

demo: install
	$(BIN)/vigil import demo/nezha-trainticket --space demo --replace
	$(BIN)/vigil investigate --space demo --latest --format html

test: install-test
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/vigil bench ../shared/datasets --json out/bench.json

clean:
	rm -rf $(VENV) .vigil out build *.egg-info
