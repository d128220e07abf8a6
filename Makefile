# mummi-ml: the two commands.
#   make demo   set everything up (.venv) and run the end-to-end demo (simulate, train, evaluate, select)
#   make test   set everything up (.venv) and run the test suite (the same command CI runs)
# Other targets: setup, test-slow, lint, bench, clean.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean

setup: $(STAMP)

# pip install -e '.[mpich,dev]': the package, torch==2.13.0 (the CPU build), mpi4py with PyPI's
# MPICH wheel (so `mpiexec -n 3` works with no flags), pytest and ruff.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[mpich,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/mummi-ml demo --config configs/quickstart.yaml --out runs/demo

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra

test-slow: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra -m slow

lint: setup
	$(BIN)/ruff check .

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache runs
