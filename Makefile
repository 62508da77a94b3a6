# The front door: every command a person needs is a target here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PY_REQUIREMENTS := requirements.txt requirements-dev.txt gcp_function/requirements.txt spark_jobs/requirements.txt pyproject.toml

.DEFAULT_GOAL := help
.PHONY: help setup jars check test lint typecheck demo local-locations bench bench-batch-events bench-merge bench-batch samples gcp-package checkov clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(PY_STAMP): $(PY_REQUIREMENTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json
	npm install --no-save --no-package-lock --loglevel=error
	@touch $@

# Delta Lake's jars for every local Spark (tests, demo, benchmarks), from Maven Central once; offline after.
# Behind a proxy or a private mirror, configure Maven itself (~/.m2/settings.xml), see README.
JARS_DIR := .jars/delta
JARS_STAMP := $(JARS_DIR)/.installed

$(JARS_STAMP): spark_jobs/jars/pom.xml
	@rm -rf $(JARS_DIR)
	mvn --batch-mode --quiet -f spark_jobs/jars/pom.xml dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory=$(abspath $(JARS_DIR))
	@touch $@

jars: $(JARS_STAMP) ## Fetch the pinned Delta Lake jars into .jars/delta (once; offline afterwards)

# pip, npm and Maven install independent things: side by side, a fresh setup takes about as long as
# pip alone (71 s here, 162 s one after another).
SETUP_STAMPS := $(PY_STAMP) $(NODE_STAMP) $(JARS_STAMP)

setup: ## Create .venv, node_modules and .jars (fast when already there)
	@$(MAKE) --no-print-directory -j4 $(SETUP_STAMPS)

lint: $(PY_STAMP) ## ruff (lint and format check)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(PY_STAMP) ## mypy, strict on filegate/, spark_jobs/ and local_world/
	$(BIN)/mypy

check: $(PY_STAMP) lint typecheck ## Fast: lint, types and the tests that start no service (no emulator, JVM or demo)
	$(BIN)/python -m pytest -q -m "not services"

# 3 pytest-xdist workers on 2 cores: the Spark tests keep a JVM busy, the rest wait on emulators and
# task processes. loadgroup hands out tests one by one, so no file's tests queue on one worker; a file
# whose tests share a module fixture stays whole (SHARED_FIXTURE_FILES, tests/conftest.py). Only two
# workers start a Spark session of their own (JVM_WORKERS there); the third runs the other tests.
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3

# lint, mypy and checkov side by side (each one process; on a fresh clone about 1, 11 and 13 s), their
# output kept whole per target.
test: ## The whole suite: lint, types, unit, emulator, Spark and infra tests
	@$(MAKE) --no-print-directory -j4 $(SETUP_STAMPS) $(CHECKOV_STAMP)
	@$(MAKE) --no-print-directory -j3 --output-sync=target lint typecheck checkov
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# checkov pins its own dependencies (some clash with ours), so it lives in its own virtualenv.
CHECKOV_VENV := .tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): infra/requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_STAMP) ## Scan infra/ (Terraform) for misconfigurations; skips carry inline reasons
	$(CHECKOV_VENV)/bin/checkov --directory infra --framework terraform --quiet --compact --skip-download

gcp-package: $(PY_STAMP) ## Build build/gcp_function/ and its zip: the GCP function with the core vendored in
	$(BIN)/python gcp_function/build.py

bench: setup ## Handler benchmarks vs the raw-SDK floor into bench/results/handler.md (QUICK=1: small sizes)
	$(BIN)/python bench/bench_handler.py $(if $(QUICK),--quick)

bench-batch-events: setup ## Pipeline-batch events (member, trigger, sealing member) vs raw SDK calls into bench/results/handler_batches.md
	$(BIN)/python bench/bench_handler.py --batches-only $(if $(QUICK),--quick)

bench-merge: setup ## Job vs a bare Delta-on-Spark MERGE (and delta-rs) into bench/results/merge.md
	$(BIN)/python bench/bench_merge.py

bench-batch: setup ## Batch job's tasks at 1x and 10x the issue's day vs bare Delta writes + MERGEs into bench/results/batch.md (QUICK=1: 5k orders)
	$(BIN)/python bench/bench_batch.py $(if $(QUICK),--quick)

samples: setup ## Regenerate data/samples (deterministic)
	$(BIN)/python -m local_world samples --rows 120 --date 2025-03-03 --days 5 --malformed 3 \
		--seed 7 --late-share 0.08 --duplicate-share 0.04 --out data/samples
	$(BIN)/python -m local_world ecommerce-samples --date 2025-01-15 --days 2 --seed 7 --out data/samples/ecommerce

demo: setup ## The whole flow on this machine: Azurite, watcher, function, local Jobs API, Spark
	$(BIN)/python -m local_world demo $(ARGS)

TARGET ?= azure
local-locations: $(PY_STAMP) ## Create landing/archive/rejected on a running Azurite (TARGET=gcp: the GCS emulator)
	$(BIN)/python -m local_world locations --target $(TARGET)

clean: ## Remove build output and local state (keeps .venv and node_modules)
	rm -rf build .filegate .pytest_cache .mypy_cache .ruff_cache
