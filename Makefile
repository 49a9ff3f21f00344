# Toroid: `make up` runs the whole system, `make test` runs every test. See README.md.
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.14.1
BIN        := $(VENV)/bin
PIP        := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: up install install-dev chromium fashion-mnist test load-test lint bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, with its own pin, so that nothing below pulls a multi-GB CUDA build by accident.
install: $(BIN)/python
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e .

install-dev: $(BIN)/python
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"

up: install
	$(BIN)/toroid up

chromium:
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "chromium missing and not root: browser tests will skip (run 'sudo apt-get install -y chromium' to enable them)"; fi

# Debian's dataset-fashion-mnist: the real Fashion-MNIST (IDX, 60k/10k) under /usr/share/datasets/fashion-mnist,
# read by the fashion_mnist dataset and its tests (docs/data.md)
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST missing and not root: its tests will skip (run 'sudo apt-get install -y dataset-fashion-mnist')"; fi

lint: install-dev
	$(BIN)/ruff check .

test: install-dev chromium fashion-mnist
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# 40 clients for 60 s against a real stack (docs/operations.md, "Load test"); its report goes to $(LOAD_REPORT)
LOAD_REPORT ?= /tmp/toroid-load-report.json
load-test: install-dev
	TOROID_LOAD_REPORT=$(LOAD_REPORT) $(BIN)/python -m pytest -m load -s tests/security/test_load.py

bench: install-dev
	$(PIP) install -e ".[dev,bench]"
	$(BIN)/python -m bench

bench-gpu: install-dev
	$(PIP) install -e ".[dev,bench]"
	$(BIN)/python -m bench --device cuda

clean:
	rm -rf .toroid .pytest_cache .ruff_cache
