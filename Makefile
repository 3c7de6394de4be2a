# Two commands for a fresh machine (Python 3.11 + apt):  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.selfspec-installed

.PHONY: install models demo test test-all lint clean

install: $(STAMP)

# torch is installed first and pinned to the CPU wheel, so nothing can pull the multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,dense]"
	touch $(STAMP)

models: install
	$(BIN)/selfspec models pull

demo: models
	$(BIN)/selfspec demo

test: models
	$(BIN)/pytest -q -m "not gpu and not slow"

test-all: models
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check selfspec services orchestrator trainer evaluation tests bench

clean:
	rm -rf $(VENV) .selfspec .pytest_cache
