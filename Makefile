# ecs-reconciler: every target bootstraps its own virtualenv from nothing (python3 >= 3.11).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# test workers (pytest-xdist), each with its own moto server, each given whole files (module
# fixtures are set up once; see tests/conftest.py). 4 on 2 cores: the longest files mostly
# wait (the soak, the HA tests), and a fourth worker overlaps them (2 min 11-28 s against
# 2 min 28 s - 2 min 54 s with 3, measured on an idle 2-core machine)
TEST_WORKERS ?= 4
# test-timeshift: a time inside the example specs' weekday 09:00-19:00 Asia/Tokyo window
AT ?= 2026-11-30T10:30:00+09:00

.PHONY: help venv lock run demo soak test test-unit test-timeshift lint format schema renovate-check workflows-check deploy-check slo-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv from the lock file (requirements/dev.txt), with the package in it

lock: $(STAMP) ## re-resolve requirements/*.txt (hashes included) from pyproject.toml's ranges
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --extra dev --output-file requirements/dev.txt pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --output-file requirements/runtime.txt pyproject.toml
	# a machine's own --find-links (pip.conf) is no part of the lock; Renovate refuses --no-emit-find-links
	sed -i -e '/^--find-links /{N;d;}' requirements/dev.txt requirements/runtime.txt

run: $(STAMP) ## the controller on the embedded sandbox, with a live view of pools and runners (Ctrl-C stops)
	$(BIN)/ecs-reconciler sandbox live

demo: $(STAMP) ## one pass on the embedded sandbox: validate -> plan -> apply -> plan (exit 0 if converged)
	$(BIN)/ecs-reconciler sandbox run

# soak: minutes of chaos and the seed (bench/soak.py; CI runs 30 minutes nightly)
MINUTES ?= 3
SEED ?= 1
soak: $(STAMP) ## chaos soak: two controllers on the sandbox under faults, invariants checked (MINUTES, SEED)
	$(BIN)/python bench/soak.py --minutes $(MINUTES) --seed $(SEED)

test: $(STAMP) ## the whole suite (unit + end-to-end), $(TEST_WORKERS) workers
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=12

test-unit: $(STAMP) ## the tests that need no server or process, in seconds
	$(BIN)/pytest -q -m "not e2e"

test-timeshift: $(STAMP) ## the whole suite with every Python process's clock at AT (default: inside a schedule window)
	$(BIN)/python tools/timeshift.py $(AT) -- $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP) ## ruff (lint + format check) and mypy on the package
	$(BIN)/ruff check reconciler tests tools bench deploy
	$(BIN)/ruff format --check reconciler tests tools bench deploy
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix reconciler tests tools bench deploy
	$(BIN)/ruff format reconciler tests tools bench deploy

schema: $(STAMP) ## regenerate schemas/ from the models
	$(BIN)/ecs-reconciler schema --write schemas

renovate-check: ## prove that the real Renovate finds every version and image in specs/
	$(PYTHON) tools/renovate_check.py

workflows-check: ## actionlint on every GitHub workflow (the shared offline tool)
	../shared/tools/actionlint .github/workflows/*.yml

deploy-check: $(STAMP) ## cfn-lint on every CloudFormation template, then the tests over the stack (and its deployment into moto)
	$(BIN)/cfn-lint deploy/cloudformation/*.yaml
	$(BIN)/python tools/iam_policy.py --check-template
	$(BIN)/pytest -q tests/test_cloudformation.py

PROMTOOL ?= promtool
slo-check: ## promtool: check and unit-test the SLO rules in deploy/prometheus (installs nothing)
	@command -v $(PROMTOOL) >/dev/null || { echo "slo-check: promtool not found; install it with: apt-get update && apt-get install -y prometheus (Debian/Ubuntu), or set PROMTOOL=/path/to/promtool" >&2; exit 1; }
	$(PROMTOOL) check rules deploy/prometheus/ecs-reconciler-rules.yaml
	cd deploy/prometheus && $(PROMTOOL) test rules ecs-reconciler-rules.test.yaml

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
