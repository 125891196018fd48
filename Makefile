# ecs-reconciler: every target bootstraps its own virtualenv from nothing (python3 >= 3.11).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv run demo test lint format schema renovate-check workflows-check deploy-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with the package and its dev tools

run: $(STAMP) ## the controller on the embedded sandbox, with a live view of pools and runners (Ctrl-C stops)
	$(BIN)/ecs-reconciler sandbox live

demo: $(STAMP) ## one pass on the embedded sandbox: validate -> plan -> apply -> plan (exit 0 if converged)
	$(BIN)/ecs-reconciler sandbox run

test: $(STAMP) ## run the test suite
	$(BIN)/pytest -q

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

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
