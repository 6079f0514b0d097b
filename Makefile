# The verbs of the lab. `make` (or `make help`) lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# VARIANT=kraft or VARIANT=replicated adds that variant's override files to every compose command
# (make down VARIANT=kraft, make topic VARIANT=replicated); docs/kafka-variants.md.
VARIANT ?=
ifneq ($(filter-out kraft replicated,$(VARIANT)),)
$(error VARIANT=$(VARIANT) is not a lab variant: use kraft or replicated, or leave it unset)
endif
VARIANT_FILES_kraft := -f docker-compose.yml -f docker-compose.kraft.yml
VARIANT_FILES_replicated := $(VARIANT_FILES_kraft) -f docker-compose.replicated.yml
# The default (ZooKeeper) variant's files, named for `make reset`, which takes every variant's.
VARIANT_FILES_zookeeper := -f docker-compose.yml
# Every Compose command runs through compose/compose.sh: `docker compose`, else a standalone
# `docker-compose` v2, once it has checked the version and that the daemon answers; if something
# is missing it says what in one line, with the fix and `make demo`. To name the command
# yourself: DOCKER_COMPOSE=docker-compose (still checked). The variant's files are added either
# way: COMPOSE is not read from the environment, where an exported COMPOSE used to drop them.
# Hence `:=`, never `?=`, for every variable that carries the variant (tests/unit/test_make_up.py
# exports each of them and checks the variant survives).
FIND_COMPOSE := compose/compose.sh
COMPOSE := $(strip $(FIND_COMPOSE) $(VARIANT_FILES_$(VARIANT)))
N ?= 3
TOPIC ?= quotes
DLQ ?= quotes.dlq
MESSAGES ?= 10
# Kafka's CLI tools run in a one-shot container of their own (the compose file's kafka-cli,
# removed on exit), not inside the broker's: a tool's JVM there would count against the
# broker's 1 GiB limit, and the OOM killer could take the broker. Each tool is given the
# container's own KAFKA_BOOTSTRAP_SERVERS, which the variant's compose files set to all its
# brokers: `make topic VARIANT=replicated` works with broker 1 down.
KAFKA_CLI := $(COMPOSE) run --rm --no-deps -T kafka-cli
BOOTSTRAP := --bootstrap-server "$$KAFKA_BOOTSTRAP_SERVERS"

##@ The lab (needs Docker)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# First run: .env from .env.example, every change-me placeholder replaced by a random secret.
.env:
	@$(PYTHON) -c 'import re, secrets, pathlib; text = pathlib.Path(".env.example").read_text(); pathlib.Path(".env").write_text(re.sub(r"(?m)=change-me-[^\s]*$$", lambda m: "=" + secrets.token_hex(12), text))'
	@chmod 600 .env
	@echo "created .env from .env.example, with fresh random passwords"

# NiFi does not refuse short single-user credentials: it prints an error, ignores both values and
# starts with a generated login, so nifi-init would fail with 401. Check the lengths first.
.PHONY: check-env
check-env: .env
	@user="$$(sed -n 's/^NIFI_USERNAME=//p' .env | tail -n 1 | sed -e 's/^"\(.*\)"$$/\1/' -e "s/^'\(.*\)'$$/\1/")"; \
	if [ "$${#user}" -lt 4 ]; then \
	  echo "NIFI_USERNAME in .env has $${#user} characters; NiFi needs at least 4 and would ignore it. Edit .env and run make up again." >&2; \
	  exit 1; \
	fi
	@pw="$$(sed -n 's/^NIFI_PASSWORD=//p' .env | tail -n 1 | sed -e 's/^"\(.*\)"$$/\1/' -e "s/^'\(.*\)'$$/\1/")"; \
	if [ "$${#pw}" -lt 12 ]; then \
	  echo "NIFI_PASSWORD in .env has $${#pw} characters; NiFi needs at least 12 and would ignore it. Edit .env and run make up again." >&2; \
	  exit 1; \
	fi

# Compose first, then .env: a machine that cannot run the lab gets one line and no new .env.
.PHONY: up
up: ## Start the whole lab (creates .env on first run)
	@$(FIND_COMPOSE) --which > /dev/null
	@$(MAKE) --no-print-directory check-env
	$(COMPOSE) up -d --build
	@echo "Starting; NiFi needs 1-3 minutes the first time (make ps, make logs SERVICE=nifi)."
	@echo "Status http://localhost:8088  Kafka UI http://localhost:8080  pgAdmin http://localhost:5050  mongo-express http://localhost:8081  NiFi https://localhost:8443/nifi"

.PHONY: up-kraft
up-kraft: ## The lab on Kafka 4 in KRaft mode, no ZooKeeper (stop: make down VARIANT=kraft)
	$(MAKE) up VARIANT=kraft

.PHONY: up-replicated
up-replicated: ## The lab on 3 KRaft brokers, 3 replicas (stop: make down VARIANT=replicated)
	$(MAKE) up VARIANT=replicated

.PHONY: down
down: ## Stop the lab, keeping its data
	$(COMPOSE) down

.PHONY: ps
ps: ## Show the services, their health, and the one-shots' exit codes
	$(COMPOSE) ps --all

.PHONY: logs
logs: ## Follow the logs (SERVICE=consumer for one)
	$(COMPOSE) logs -f --tail=200 $(SERVICE)

# `down --volumes` removes only the volumes of the files it is given, so reset runs it once per
# variant, whichever VARIANT is set: a reset that left the other variants' broker logs and the
# group's committed offsets while it emptied the databases would make the next `up` of that
# variant skip everything it had already delivered. The first `down` removes every container of
# the lab (--remove-orphans), so no volume is still in use when its turn comes.
.PHONY: reset
reset: ## Stop the lab and delete the data volumes of every variant (asks first; CONFIRM=yes skips)
	@if [ "$(CONFIRM)" != "yes" ]; then \
	  printf 'This deletes ALL lab data of every Kafka variant (ZooKeeper, KRaft and replicated brokers; PostgreSQL, MongoDB, NiFi, pgAdmin volumes). Type yes to continue: '; \
	  read answer; [ "$$answer" = yes ] || { echo "Aborted."; exit 1; }; \
	fi
	$(FIND_COMPOSE) $(VARIANT_FILES_zookeeper) down --volumes --remove-orphans
	$(FIND_COMPOSE) $(VARIANT_FILES_kraft) down --volumes --remove-orphans
	$(FIND_COMPOSE) $(VARIANT_FILES_replicated) down --volumes --remove-orphans

.PHONY: psql
psql: ## Open psql in the lab's database
	$(COMPOSE) exec postgres sh -c 'psql -U "$$POSTGRES_USER" -d "$$POSTGRES_DB"'

.PHONY: mongosh
mongosh: ## Open mongosh in the lab's database
	$(COMPOSE) exec mongo sh -c 'mongosh -u "$$MONGO_INITDB_ROOT_USERNAME" -p "$$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin quotes'

.PHONY: topic
topic: ## Show the quotes topic and its latest records (MESSAGES=10)
	$(KAFKA_CLI) bash -c 'kafka-topics $(BOOTSTRAP) --describe --topic $(TOPIC)'
	$(KAFKA_CLI) bash -c 'kafka-console-consumer $(BOOTSTRAP) --topic $(TOPIC) \
	  --from-beginning --max-messages $(MESSAGES) --timeout-ms 10000 \
	  --property print.partition=true --property print.offset=true'

.PHONY: dlq
dlq: ## Show the dead-letter topic's records with their reason headers
	$(KAFKA_CLI) bash -c 'kafka-console-consumer $(BOOTSTRAP) --topic $(DLQ) \
	  --from-beginning --max-messages $(MESSAGES) --timeout-ms 10000 \
	  --property print.headers=true --property print.offset=true'

.PHONY: scale
scale: ## Run N consumer replicas in one group (make scale N=3)
	$(COMPOSE) up -d --no-recreate --scale consumer=$(N) consumer

.PHONY: counts
counts: ## Records in Kafka vs rows in PostgreSQL vs documents in MongoDB
	@$(FIND_COMPOSE) --which > /dev/null  # the lines below pipe into awk, which would hide its failure
	@printf 'kafka records (quotes):   '; $(KAFKA_CLI) bash -c 'kafka-get-offsets $(BOOTSTRAP) --topic $(TOPIC)' | awk -F: '{s += $$3} END {print s + 0}'
	@printf 'kafka dead letters:       '; $(KAFKA_CLI) bash -c 'kafka-get-offsets $(BOOTSTRAP) --topic $(DLQ)' | awk -F: '{s += $$3} END {print s + 0}'
	@printf 'postgres rows:            '; $(COMPOSE) exec -T postgres sh -c 'psql -U "$$POSTGRES_USER" -d "$$POSTGRES_DB" -Atc "SELECT count(*) FROM quotes"'
	@printf 'mongo documents:          '; $(COMPOSE) exec -T mongo sh -c 'mongosh --quiet -u "$$MONGO_INITDB_ROOT_USERNAME" -p "$$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin --eval "db.getSiblingDB(\"quotes\").quotes.countDocuments()"'
	@$(KAFKA_CLI) bash -c 'kafka-consumer-groups $(BOOTSTRAP) --describe --group quotes-consumer'

##@ Development (no Docker needed)

$(VENV)/.installed: consumer/pyproject.toml producer/pyproject.toml status/pyproject.toml tests/requirements.txt bench/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r tests/requirements.txt -r bench/requirements.txt -e consumer -e producer -e status
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv: the consumer, the producer, test and benchmark tools

.PHONY: lint
lint: venv ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

.PHONY: servers
servers: venv ## Start the native test servers (Kafka, PostgreSQL, FerretDB) unless reachable
	$(PY) -m native.servers up

.PHONY: servers-down
servers-down: venv ## Stop the native test servers
	$(PY) -m native.servers down

.PHONY: test
test: lint servers ## Lint, then unit and integration tests against real servers
	$(PY) -m pytest

# FUZZ_SECONDS: how long the fuzzer runs (libFuzzer's -max_total_time).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: venv ## Fuzz the record path (FUZZ_SECONDS=60); new inputs and crashes go to a printed temp dir
	$(PY) -m tests.fuzz.fuzz_record -max_total_time=$(FUZZ_SECONDS) -timeout=10

# The chaos soak runs its own servers (ports +200, run folder -soak): it restarts and freezes
# them, so it never touches the test servers of make servers.
MINUTES ?= 4
RATE ?= 300
SOAK_ENV := STREAMLAB_RUN=$(or $(STREAMLAB_RUN),/tmp/streamlab-$(shell id -u))-soak \
  STREAMLAB_KAFKA_PORT=19292 STREAMLAB_ZOOKEEPER_PORT=12381 \
  STREAMLAB_POSTGRES_PORT=15632 STREAMLAB_FERRETDB_PORT=27417
.PHONY: soak
soak: venv ## Chaos soak: 2 replicas, a steady stream, every server failing in turn (MINUTES=4 RATE=300)
	$(SOAK_ENV) $(PY) -m native.servers up
	$(SOAK_ENV) $(PY) -m tests.soak --minutes $(MINUTES) --rate $(RATE); \
	  status=$$?; $(SOAK_ENV) $(PY) -m native.servers down > /dev/null; exit $$status

.PHONY: test-replicated
test-replicated: servers ## 3 native KRaft brokers; the partition leader SIGKILLed mid-stream
	$(PY) -m pytest -m replicated

.PHONY: test-nifi
test-nifi: servers test-nifi-processors ## The NiFi flow in a native NiFi: deploy, retry, quotes reach Kafka (slow)
	$(PY) -m pytest -m nifi

# Build output stays outside the repository, next to the harness's run directory.
NIFI_PROCESSOR_TESTS_BUILD ?= $(or $(STREAMLAB_RUN),/tmp/streamlab-$(shell id -u))/nifi-processor-tests
.PHONY: test-nifi-processors
test-nifi-processors: ## Apache NiFi 1.28.1's GetHTTP and SplitJson on the template's settings (nifi-mock)
	mvn -B -q -f tests/nifi-processors/pom.xml -Dbuild.dir=$(NIFI_PROCESSOR_TESTS_BUILD) -Dpython=$(PYTHON) test
	@echo "NiFi 1.28.1 processor tests passed (reports: $(NIFI_PROCESSOR_TESTS_BUILD)/surefire-reports)"

.PHONY: nifi
nifi: venv ## Start the native test NiFi on https://127.0.0.1:18443/nifi
	$(PY) -m native.servers.nifi start

.PHONY: nifi-down
nifi-down: venv ## Stop the native test NiFi
	$(PY) -m native.servers.nifi stop

.PHONY: bench
bench: servers ## Benchmark the consumer against the native servers (ARGS=--quick)
	$(PY) -m bench $(ARGS)

.PHONY: consumer
consumer: venv ## Run the consumer on the host with the settings in .env
	$(PY) -m quotes_consumer

##@ The lab without Docker (native processes, data kept in STREAMLAB_LAB_DIR)

# UIS=0 leaves out pgAdmin and mongo-express (docs/without-docker.md says what each costs).
UIS ?= 1
.PHONY: demo
demo: venv ## The whole pipeline without Docker; Ctrl-C stops it (PRODUCER=nifi: the NiFi flow, UIS=0: no web UIs)
	$(PY) -m native up $(if $(PRODUCER),--producer $(PRODUCER)) $(if $(filter 0,$(UIS)),--no-uis)

.PHONY: demo-down
demo-down: venv ## Stop a native lab left running (its data is kept)
	$(PY) -m native down

.PHONY: demo-reset
demo-reset: venv ## Stop the native lab and delete its data (asks first; CONFIRM=yes skips)
	$(PY) -m native reset $(if $(filter yes,$(CONFIRM)),--yes)

.PHONY: demo-counts
demo-counts: venv ## make counts, for the native lab
	@$(PY) -m native counts

.PHONY: demo-psql
demo-psql: venv ## make psql, for the native lab
	@$(PY) -m native psql

.PHONY: demo-mongo
demo-mongo: venv ## make mongosh, for the native lab: Python + pymongo, db = quotes
	@$(PY) -m native mongo

.PHONY: demo-stop
demo-stop: venv ## docker compose stop, for the native lab's databases (SERVICE=postgres or mongo)
	@$(PY) -m native stop $(SERVICE)

.PHONY: demo-start
demo-start: venv ## Start again what make demo-stop stopped (SERVICE=postgres or mongo)
	@$(PY) -m native start $(SERVICE)

.PHONY: demo-topic
demo-topic: venv ## make topic, for the native lab (MESSAGES=10)
	@$(PY) -m native topic --messages $(MESSAGES)

.PHONY: demo-dlq
demo-dlq: venv ## make dlq, for the native lab (MESSAGES=10)
	@$(PY) -m native dlq --messages $(MESSAGES)
