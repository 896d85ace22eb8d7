# rax.carina: instant-on container clusters. `make demo` and `make test` do all of their own
# set-up (virtualenv, Docker engine, host images, ansible-test pre-seed), idempotently.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
BIN         := $(CURDIR)/$(VENV)/bin
COLLECTION  := collections/ansible_collections/rax/carina
# pytest-xdist workers for make test/integration: test modules run side by side, each whole on one worker
# (see conftest.py). The test machines have 2 CPUs; with 3 workers a clean-clone `make test` took 45.6 min of
# tests against 60 with 2 (2026-12-08): the third keeps the CPUs busy while the others wait on clusters.
TEST_WORKERS ?= 3
PYTEST_SPREAD = -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder
# Every recipe sees the venv first on PATH and the engine that engine.sh found or started.
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Python must keep the bytecode it compiles: the venvs are installed with --no-compile, and a process
# that may not write __pycache__ compiles every module it imports again at every start (ansible and
# openstacksdk: 4 s of CPU more per ansible-playbook, openstack CLI call or OpenStack module task).
unexport PYTHONDONTWRITEBYTECODE
ENGINE       = export DOCKER_HOST="$$(scripts/engine.sh up)";

.PHONY: help setup venv engine kubernetes images seed browser demo test lint unit integration bench \
        engine-stop serve serve-stop clean constraints

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

venv: ## the virtualenv with pinned tools
	@scripts/venv.sh

engine: ## a Docker engine that answers (reused, or ours started in the background)
	@scripts/engine.sh up >/dev/null

kubernetes: engine ## the Kubernetes binaries and images, built once from Debian's source, cached
	@$(ENGINE) scripts/kubernetes.sh build

images: engine ## the host images (built locally, cached by recipe hash; the kube one builds kubernetes first)
	@$(ENGINE) scripts/image.sh build

seed: venv ## the offline pre-seed ansible-test needs
	@scripts/seed-ansible-test.sh $(BIN)/python

setup: venv engine images seed ## everything the demo and the tests need

browser: ## Debian's chromium for the panel's browser tests (installed once)
	@scripts/browser.sh >/dev/null

demo: setup ## the main job
	@$(ENGINE) scripts/demo.sh

lint: venv seed ## every quality gate; fails on any finding
	ruff check .
	ansible-lint --offline --profile production
	cd $(COLLECTION) && ansible-test sanity --venv --python 3.13 --color no
	cd $(COLLECTION) && antsibull-changelog lint
	antsibull-docs lint-collection-docs --plugin-docs $(COLLECTION)

unit: venv ## fast tests: no engine needed
	pytest -q tests/unit $(COLLECTION)/tests/unit

integration: setup browser ## tests on real host containers
	@$(ENGINE) pytest -q $(PYTEST_SPREAD) -m integration tests/integration testcloud

test: setup browser seed ## every test, with every gate (make lint) run beside them; fails if either fails
	@$(ENGINE) mkdir -p .cache; \
	$(MAKE) --no-print-directory lint > .cache/lint.log 2>&1 & gates=$$!; \
	rc=0; pytest $(PYTEST_SPREAD) --durations=30 tests testcloud $(COLLECTION)/tests/unit || rc=$$?; \
	echo "== make lint (run beside the tests) =="; \
	if wait $$gates; then cat .cache/lint.log; echo "== lint: clean =="; \
	else cat .cache/lint.log; echo "== lint: FAILED (above) =="; rc=1; fi; \
	exit $$rc

bench: setup ## print the benchmark figures
	@$(ENGINE) python scripts/bench.py

serve: setup ## carina serve in the background (the panel and Magnum's API), as make demo leaves it
	@scripts/serve.sh start

serve-stop: ## stop the carina serve that make demo (or make serve) started, by its pidfile
	@scripts/serve.sh stop

engine-stop: ## stop the Docker engine make started (by its pidfile), nothing else
	@scripts/engine.sh down

clean: ## remove the virtualenv and caches (images stay; see scripts/image.sh remove)
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

constraints: venv ## re-pin requirements/constraints.txt from the venv
	@{ echo '# Full pin set of the virtualenv, from pip freeze; regenerate with: make constraints'; \
	   $(BIN)/pip freeze --exclude-editable; } > requirements/constraints.txt
