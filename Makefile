# Two entry points (see README): `make synth` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
# aws-cdk-lib runs on jsii, a Node.js process: Node.js 22 or later (20 reached its end of life on
# 2026-04-30). package.json installs Node 22 into node_modules/.bin, first on PATH above, so any
# Node that runs npm can set up; jsii's own warnings stay on, so a wrong Node shows.
MIN_NODE_MAJOR := 22

.PHONY: synth test lint pytest deps system-deps clean lab docs docs-figures

$(VENV)/.stamp: pyproject.toml runtime/pyproject.toml contract/pyproject.toml apiserver/pyproject.toml testkit/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./contract -e ./runtime -e ./apiserver -e ./testkit -e '.[dev]'
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt $(MIN_NODE_MAJOR) ]; then \
		echo "node $$(node --version) is first on PATH; synthesis needs Node.js $(MIN_NODE_MAJOR)+" \
			"(package.json installs it into node_modules/.bin)" >&2; \
		exit 1; \
	fi
	touch $@

# checkov pins what the dev venv needs newer (boto3==1.35.49, packaging<24): its own venv.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_VENV)/.stamp-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

deps: $(VENV)/.stamp node_modules/.stamp $(CHECKOV_VENV)/.stamp-$(CHECKOV_VERSION)

# Kernel tools for the network-namespace tests (root on this kind of machine; CI is root too;
# nft counts each gateway's packets per shard in the active-active lab; iperf3 is the lab's bulk
# TCP load, `--load iperf3`, and its test),
# and kubectl, the independent client of the test API server's tests (preinstalled on this kind
# of machine; not in the distribution's archive, so named rather than installed).
system-deps:
	@if ! command -v ip >/dev/null || ! command -v bridge >/dev/null || ! command -v ping >/dev/null \
		|| ! command -v nft >/dev/null || ! command -v iperf3 >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iputils-ping nftables iperf3 >/dev/null; \
	fi
	@if [ -z "$$KUBECTL" ] && ! command -v kubectl >/dev/null; then \
		echo "missing: kubectl (tests/testkit/test_apiserver_kubectl.py): install kubectl 1.33" \
			"from https://kubernetes.io/docs/tasks/tools/ or set KUBECTL=/path/to/kubectl" >&2; \
		exit 1; \
	fi

synth: $(VENV)/.stamp node_modules/.stamp
	rm -rf cdk.out dist/manifests
	cdk synth --no-notices --quiet $(if $(GATEWAY_IMAGE),-c eks-hybrid-gateway:image=$(GATEWAY_IMAGE))
	$(PY) -m eks_hybrid_gateway.manifests --out dist/manifests $(if $(GATEWAY_IMAGE),--image $(GATEWAY_IMAGE))
	@echo "CloudFormation templates: $(CURDIR)/cdk.out/"
	@echo "Kubernetes manifests:     $(CURDIR)/dist/manifests/"

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy constructs/eks_hybrid_gateway runtime/hybrid_gateway contract/hybrid_gateway_contract apiserver/kube_test_apiserver testkit/hybrid_gateway_testkit tests bench examples docs
	$(BIN)/lint-imports

# Two phases. First the suites that are CPU-bound in their own process (synthesis, validators,
# the EC2 emulator, the test API server's conformance: no network namespaces, no lease timing,
# no daemons) on two workers, a test file per worker so module fixtures are built once; then
# everything else in one process, as the daemon, lease-timing and namespace tests measure
# timing. Files in those suites that start daemons or namespaces go to the second phase, and so
# do the watch tests: a watch woken by a hang partition can still deliver an event written
# after it when its thread is scheduled late (kube_test_apiserver/watch.py checks the
# partition before its wait, not after), which two busy workers made happen once. The
# phases select by file, never by deselecting tests: syrupy then still fails a run on a snapshot
# that no test uses any more. PYTEST_ARGS replaces both with one run of its own. The second
# phase prints its slowest tests: it is most of the run's time, which must stay well under 30 min.
PYTEST_TWO_WORKERS := tests/cdk tests/chart tests/contract tests/testkit tests/runtime/core \
	tests/runtime/ops tests/test_contract.py tests/test_docs.py
PYTEST_ONE_PROCESS_THERE := tests/chart/test_rbac_covers_runtime.py \
	tests/testkit/test_apiserver_netns.py tests/testkit/test_apiserver_watch.py
PYTEST_TWO_WORKER_FILES = $(filter-out $(PYTEST_ONE_PROCESS_THERE), \
	$(shell find $(PYTEST_TWO_WORKERS) -name 'test_*.py' | sort))
pytest: deps system-deps
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_TWO_WORKERS) \
		$(addprefix --ignore=,$(PYTEST_ONE_PROCESS_THERE))
	$(BIN)/pytest --durations=15 $(addprefix --ignore=,$(PYTEST_TWO_WORKER_FILES))
else
	$(BIN)/pytest $(PYTEST_ARGS)
endif

# Set-up in parallel (pip, npm, checkov's venv, apt), then lint beside the tests: mypy's minutes
# overlap the first (synthesis) tests instead of adding to the run.
test:
	$(MAKE) -j4 --output-sync=target deps system-deps
	$(MAKE) -j2 lint pytest

# The single-machine lab (root): one failover drill against the real daemon, e.g.
# `make lab DRILL=kill-leader LAB_ARGS="--lease-duration 1"`, or in active-active mode
# `make lab DRILL=kill-owner LAB_ARGS="--mode active-active --gateways 3"`. Report and plot go to lab-out/.
DRILL ?= kill-leader
LAB_ARGS ?=
lab: deps system-deps
	$(PY) -m hybrid_gateway_testkit.lab --drill $(DRILL) $(LAB_ARGS)

# The failover timeline in the docs (docs/img/failover-timeline.png, shown in docs/lab.md): one
# short real kill-leader drill in the lab (root, about a minute), its picture copied into docs/.
# Run it again when the drill's picture or the failover changes; the test suite never runs it.
DOCS_FIGURE_OUT := lab-out/docs-figures
docs-figures: deps system-deps
	rm -rf $(DOCS_FIGURE_OUT)
	$(PY) -m hybrid_gateway_testkit.lab --drill kill-leader --baseline 2 --after 2 --out $(DOCS_FIGURE_OUT)
	mkdir -p docs/img
	cp $(DOCS_FIGURE_OUT)/timeline.png docs/img/failover-timeline.png

# The documentation site (docs/, mkdocs.yml) into site/; the test suite builds it strictly too.
docs: deps
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out dist site .pytest_cache .mypy_cache .ruff_cache
