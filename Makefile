VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

# The main job on the embedded synthetic dataset.
demo: setup
	$(VENV)/bin/slr-fast demo --out demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only -q

lint: setup
	$(VENV)/bin/ruff check .
