# The two commands of the README: `make demo` (the main job on the lab) and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
LAB_NODES ?= 2

.PHONY: setup demo test unit lint molecule lab-test bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(BIN)/npufleet lab up --nodes $(LAB_NODES)
	$(BIN)/npufleet up
	@echo "demo: the lab is still up; 'make lab-down' or '$(BIN)/npufleet lab down' removes it"

lab-down:
	$(BIN)/npufleet lab down

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production

unit: setup
	$(BIN)/pytest -q tests/unit

test: setup lint
	$(BIN)/pytest -q tests
	cd molecule/.. && PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/molecule test --all

bench: setup
	$(BIN)/python benchmarks/lab_and_preflight.py
