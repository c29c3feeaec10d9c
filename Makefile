# The README's two commands: `make demo` (the main job on the lab) and `make test` (every test).
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
LAB_NODES ?= 2

.PHONY: setup demo lab-down lint unit lab-tests molecule test bench

setup:
	./scripts/setup.sh

demo: setup
	npufleet lab up --nodes $(LAB_NODES)
	npufleet up
	@echo "demo: running site.yml again: nothing should change"
	npufleet up
	npufleet report
	@echo "demo: where the served model answers, and a request to try"
	npufleet endpoints
	@echo "demo: a short benchmark of it (written to reports/bench/)"
	npufleet bench --concurrency 1,4 --requests 8 --input-tokens 64 --output-tokens 32
	@echo "demo: done. The lab is still up: 'make lab-down' removes it (containers, network, volumes, inventory)"

lab-down:
	npufleet lab down

# vermin: plugins/modules, plugins/module_utils and the roles' scripts (roles/*/files/*.py) run on the
# nodes' Python, 3.8 and later. Annotations are not evaluated there: every file imports annotations
# from __future__ (ruff's FA102 flags one that does not).
# ansible-lint's settings (profile, excluded paths) are in .ansible-lint.
lint: setup
	ruff check .
	ruff format --check .
	vermin --target=3.8- --no-tips --violations --no-make-paths-absolute plugins/modules plugins/module_utils \
	  roles/*/files/*.py
	ansible-lint

unit: setup
	pytest -q tests/unit

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
lab-tests: setup
	pytest -q tests || [ $$? -eq 5 ]

molecule: setup
	molecule test --all

# Every test: scripts/test.sh (the lab's images built in the background beside lint and the unit
# tests; the lab tests beside the molecule scenarios; the training tests alone).
test: setup
	./scripts/test.sh

bench: setup
	python benchmarks/lab_and_preflight.py
	python benchmarks/site_setup.py
