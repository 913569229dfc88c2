# One entry point per job; every target installs what it needs first, so that a fresh
# clone can run `make test` or `make serve` alone.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1
export TF_CLI_CONFIG_FILE := $(CURDIR)/infra/terraform.rc
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install test test-unit lint bench clean

# What the whole test suite needs besides .venv; each mk/*.mk file appends its own
# (the vLLM CPU venv, the checkov venv, ...) and defines its area's targets.
TEST_PREREQS := install
include $(sort $(wildcard mk/*.mk))

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[infra,dev]'
	touch $@

install: $(STAMP) ## create .venv with the project and its infra and dev extras (idempotent)

test: $(TEST_PREREQS) ## run the whole test suite (unit and integration)
	$(BIN)/pytest

test-unit: install ## run the tests that need no local service
	$(BIN)/pytest -m "not integration"

lint: install ## ruff and mypy, both must be clean
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install ## run the benchmarks (kept apart from the tests)
	$(BIN)/python -m bench

clean: ## remove the virtualenvs, build output and caches
	rm -rf $(VENV) .venv-* cdktf.out build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
