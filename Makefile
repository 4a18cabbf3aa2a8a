# streamproc: `make help` lists the targets; README.md explains them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed

# Defaults for the Python commands only.  stack/services.sh has to see whether
# the user set KAFKA_BROKER / DATABASE_URL (then it starts nothing and waits
# for those), so these defaults are NOT exported: make puts a variable into a
# recipe's environment only when it came from the environment or the command
# line, and $(PYENV) hands the effective values to the Python commands.
KAFKA_BROKER ?= kafka://127.0.0.1:9092
DATABASE_URL ?= postgresql+asyncpg://streamproc:streamproc@127.0.0.1:5433/streamproc
PYENV = KAFKA_BROKER='$(KAFKA_BROKER)' DATABASE_URL='$(DATABASE_URL)'
# Run a Python command with those settings, echoing it without them: a
# password in DATABASE_URL must never reach a terminal or a CI log.
define py
	@echo '+ $(1)'
	@$(PYENV) $(1)
endef

# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-k smoke -x'
PYTEST_ARGS ?=

.PHONY: help venv tools services services-stop services-status chaos-services chaos-stop schema test chaos demo bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV_STAMP) ## create .venv and install the package with its dev extras

$(VENV_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "streamproc needs Python 3.11+; '$(PYTHON)' is older (set PYTHON=...)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
		|| { echo "cannot create a virtualenv; on Debian/Ubuntu: apt-get install -y python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

tools: ## install the docker-compose CLI (apt) if missing; the compose test needs it
	@if ! command -v docker-compose >/dev/null 2>&1; then \
		if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
			echo "docker-compose is missing; install it with: sudo apt-get update && sudo apt-get install -y docker-compose" >&2; exit 1; \
		fi; \
		echo "installing docker-compose with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	fi

services: venv ## start Kafka and PostgreSQL on 127.0.0.1 (or wait for KAFKA_BROKER/DATABASE_URL)
	stack/services.sh start

services-stop: ## stop the local Kafka and PostgreSQL
	stack/services.sh stop

services-status: ## show whether the local Kafka and PostgreSQL run
	stack/services.sh status

# The fault-injection suite stops and restarts services, so it has a stack of
# its own (stack/chaos.sh), never the one above nor KAFKA_BROKER/DATABASE_URL.
CHAOS_SERVICES ?= pg kafka

chaos-services: venv ## start the chaos stack: PostgreSQL 5434, Kafka 9192 (CHAOS_SERVICES='pg kafka cluster' adds 9292-9294)
	stack/chaos.sh start $(CHAOS_SERVICES)

chaos-stop: ## stop the chaos stack
	stack/chaos.sh stop

schema: venv services ## create the database schema
	$(call py,$(BIN)/faust -A agents.app init-db)

test: venv tools services chaos-services ## run the whole test suite (and the short fault suite) against the real services
	$(call py,$(BIN)/pytest $(PYTEST_ARGS))

chaos: CHAOS_SERVICES = pg kafka cluster
chaos: venv chaos-services ## the long fault-injection run (>=100k orders; 1 and 3 brokers); writes bench/results/chaos.json
	$(BIN)/pytest -m chaos -s tests/chaos $(PYTEST_ARGS)

demo: venv services schema ## run the example app on a stream of sample events
	$(call py,$(BIN)/python -m agents.demo)

bench: venv services schema ## run the benchmarks
	$(call py,$(BIN)/python -m bench)

clean: ## stop the services (the chaos stack too) and delete .stack and .venv
	stack/chaos.sh clean
	stack/services.sh clean
	rm -rf $(VENV)
