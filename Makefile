# Choreo's two quick-start commands are `make run` and `make test`; both install what is missing.
.DEFAULT_GOAL := help
SHELL := /bin/bash

UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
CHOREO := $(UV) run --frozen choreo
PYTEST_ARGS ?=

.PHONY: help uv venv browser up down status run stop test check lint format unit integration e2e clean \
	bench-peers

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

uv: ## Install uv (from PyPI) when it is missing
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv

venv: uv ## Create/refresh .venv from uv.lock (with the bench extra: `choreo bench`)
	@$(UV) sync --frozen --all-extras --quiet

# The browser tests drive Debian's Chromium through Playwright's Python package, which is told
# where it is (it never downloads a browser of its own).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## Install Debian's Chromium for the browser tests (when missing)
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

up: venv ## Install and start Kafka (KRaft), PostgreSQL and Jaeger; create topics
	@$(CHOREO) stack up

down: venv ## Stop the local stack
	@$(CHOREO) stack down

status: venv ## Show what runs where
	@$(CHOREO) stack status

run: up ## Run the platform end to end: stack, all processes (background), sample sagas
	@$(CHOREO) run --detach
	@$(CHOREO) demo
	@echo
	@echo "Console sign-in token (operator; shown once, only its hash is kept):"
	@$(CHOREO) tokens create --role operator --name local-operator --unless-exists
	@echo
	@echo "The platform keeps running: logs in .state/run.log"
	@echo "  console    http://127.0.0.1:8080/console (sign in with the token above; more tokens:"
	@echo "             uv run choreo tokens create --role viewer|operator --name NAME)"
	@echo "  HTTP API   http://127.0.0.1:8080/orders with 'Authorization: Bearer TOKEN' (docs at /docs)"
	@echo "  traces     uv run choreo sagas trace TYPE KEY (Jaeger query API on :16686)"
	@echo "  answers    uv run choreo sagas waiting, then choreo sagas approve|reject TYPE KEY --by NAME"
	@echo "  more       uv run choreo orders place --sample happy | choreo sagas list | --help"
	@echo "Stop it with 'make stop' (processes) and 'make down' (stack)."

stop: venv ## Stop the processes started by `make run`
	@$(CHOREO) stop

check: venv ## Lint, format check and type check
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy .

format: venv ## Apply ruff's fixes and formatting
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

# The whole suite on the real stack. A stack this target started is stopped again at the end;
# one that was already running is left running.
test: venv browser ## Lint and type check, then unit, integration and e2e tests on the real stack
	@was_up=$$($(CHOREO) stack status >/dev/null 2>&1 && echo yes); \
	$(CHOREO) stack up && $(MAKE) --no-print-directory check && \
	$(UV) run --frozen pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ -z "$$was_up" ]; then $(CHOREO) stack down; fi; exit $$rc

unit: venv ## Unit tests only (no infrastructure)
	@$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

# `choreo bench peers`: Choreo beside DBOS Transact (a library on the stack's PostgreSQL) and
# Temporal (its CLI's dev server, built once from the Go module proxy into ~/.cache/choreo/bin,
# like Jaeger). Not part of `make run` or `make test`: a benchmark takes minutes.
PEERS_ARGS ?= --orders 1000
bench-peers: up ## Install the peers (Temporal CLI, cached), run `choreo bench peers` (PEERS_ARGS="...")
	@$(UV) run --frozen python -m bench.peers.server
	@$(CHOREO) bench peers $(PEERS_ARGS)

clean: stop down ## Stop everything and delete its state (data, logs)
	rm -rf .state
