# The verbs of the lab. `make` (or `make help`) lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COMPOSE ?= docker compose
N ?= 3

##@ The lab (needs Docker)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# First run: .env from .env.example, every change-me placeholder replaced by a random secret.
.env:
	@$(PYTHON) -c 'import re, secrets, pathlib; text = pathlib.Path(".env.example").read_text(); pathlib.Path(".env").write_text(re.sub(r"(?m)=change-me-[^\s]*$$", lambda m: "=" + secrets.token_hex(12), text))'
	@chmod 600 .env
	@echo "created .env from .env.example, with fresh random passwords"

.PHONY: check-env
check-env: .env
	@set -a; source .env; set +a; \
	if [ $${#NIFI_PASSWORD} -lt 12 ]; then \
	  echo "NIFI_PASSWORD in .env has $${#NIFI_PASSWORD} characters: NiFi needs at least 12 (it would ignore it). Set a longer one."; exit 1; fi

.PHONY: up
up: check-env ## Start the whole lab (creates .env on first run)
	$(COMPOSE) up -d --build
	@echo "Kafka UI http://localhost:8080  pgAdmin http://localhost:5050  mongo-express http://localhost:8081  NiFi https://localhost:8443/nifi"

.PHONY: down
down: ## Stop the lab, keeping its data
	$(COMPOSE) down

.PHONY: ps
ps: ## Show the services and their health
	$(COMPOSE) ps

.PHONY: logs
logs: ## Follow the logs (SERVICE=consumer for one)
	$(COMPOSE) logs -f --tail=100 $(SERVICE)

.PHONY: reset
reset: ## Stop the lab and delete its data volumes (asks first)
	@read -r -p "Delete all lab data (topics, tables, documents, NiFi state)? [y/N] " answer; \
	[ "$$answer" = y ] || [ "$$answer" = Y ] || { echo "kept"; exit 1; }
	$(COMPOSE) down --volumes --remove-orphans

.PHONY: psql
psql: ## Open psql in the lab's database
	$(COMPOSE) exec postgres sh -c 'psql -U "$$POSTGRES_USER" -d "$$POSTGRES_DB"'

.PHONY: mongosh
mongosh: ## Open mongosh in the lab's database
	$(COMPOSE) exec mongo sh -c 'mongosh -u "$$MONGO_INITDB_ROOT_USERNAME" -p "$$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin quotes'

.PHONY: topic
topic: ## Tail the quotes topic
	$(COMPOSE) exec kafka kafka-console-consumer --bootstrap-server kafka:29092 --topic quotes --property print.partition=true --property print.offset=true

.PHONY: dlq
dlq: ## Tail the dead-letter topic, with the reason headers
	$(COMPOSE) exec kafka kafka-console-consumer --bootstrap-server kafka:29092 --topic quotes.dlq --from-beginning --property print.headers=true

.PHONY: scale
scale: ## Run N consumer replicas in one group (make scale N=3)
	$(COMPOSE) up -d --no-recreate --scale consumer=$(N) consumer

.PHONY: counts
counts: ## Records in Kafka vs rows in PostgreSQL vs documents in MongoDB
	@printf "kafka quotes topic: "; $(COMPOSE) exec -T kafka kafka-run-class kafka.tools.GetOffsetShell --bootstrap-server kafka:29092 --topic quotes 2>/dev/null | awk -F: '{s+=$$3} END {print s+0}'
	@printf "kafka dead letters: "; $(COMPOSE) exec -T kafka kafka-run-class kafka.tools.GetOffsetShell --bootstrap-server kafka:29092 --topic quotes.dlq 2>/dev/null | awk -F: '{s+=$$3} END {print s+0}'
	@printf "postgres rows:      "; $(COMPOSE) exec -T postgres sh -c 'psql -U "$$POSTGRES_USER" -d "$$POSTGRES_DB" -tAc "SELECT count(*) FROM quotes"'
	@printf "mongo documents:    "; $(COMPOSE) exec -T mongo sh -c 'mongosh --quiet -u "$$MONGO_INITDB_ROOT_USERNAME" -p "$$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin quotes --eval "db.quotes.countDocuments()"'

##@ Development (no Docker needed)

$(VENV)/.installed: consumer/pyproject.toml tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r tests/requirements.txt -e consumer
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the consumer and the test tools

.PHONY: lint
lint: venv ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

.PHONY: servers
servers: venv ## Start the native test servers (Kafka, PostgreSQL, FerretDB) unless reachable
	$(PY) -m tests.harness up

.PHONY: servers-down
servers-down: venv ## Stop the native test servers
	$(PY) -m tests.harness down

.PHONY: test
test: lint servers ## Lint, then unit and integration tests against real servers
	$(PY) -m pytest -m "not nifi"

.PHONY: consumer
consumer: venv ## Run the consumer on the host with the settings in .env
	$(PY) -m quotes_consumer
