# Developer and CI entry points; `make help` lists them. `make test` is the test command of
# README.md, and .ci/run calls exactly that.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
TOX := $(VENV)/bin/tox
# The matrix of tox.ini and the interpreters it needs.
# integration last: tox run-parallel keeps this order, two at a time (see tox.ini)
TOX_ENVS := py311,py312,py313,lint,chart,integration
PYTHONS := 3.11 3.12 3.13

.PHONY: help test lint openapi dev demo clean

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-7s %s\n", $$1, $$2}'

# tox alone finds interpreters on PATH only, where a pyenv shim of an unselected version fails
# and tox says just "could not find". .ci/find-pythons locates them or stops with what to install;
# tox gets their exact paths with --discover (one word each), not their directories on PATH,
# which would also put their python3 and pip ahead of everything else.
test: $(TOX) ## Unit tests on Python 3.11, 3.12, 3.13, lint, integration; sets up what is missing
	.ci/system-packages
	@pythons="$$(.ci/find-pythons $(PYTHONS))"; \
	echo "make test: interpreters for tox:" $$pythons; \
	$(TOX) run-parallel --parallel-no-spinner --discover $$pythons -e $(TOX_ENVS)

lint: $(TOX) ## ruff and the import-linter layer contracts
	$(TOX) run -e lint

# The committed OpenAPI document; tests/api/test_openapi_spec.py fails when it differs from what
# the code generates, so run this after changing a route, a parameter or a response schema.
openapi: ## Regenerate api/openapi.json from tmq.api (commit the result)
	$(VENV)/bin/python -m tmq.api.openapi api/openapi.json

dev: ## Editable install of tmq with the dev tools into .venv
	.ci/bootstrap $(VENV)
	$(VENV)/bin/python -m pip install -e '.[dev]'

# The whole pipeline on this machine, set up from nothing on a fresh Debian: the system packages
# (.ci/system-packages: PostgreSQL and etcd among them), the virtualenv, and tmq installed into
# it (a regular install; an editable one from `make dev` is used as it is, not replaced). Extra
# options go through DEMO_ARGS, e.g. make demo DEMO_ARGS='--api-listen 127.0.0.1:8081 --keep'.
demo: ## Run the whole pipeline on this machine (tmq demo) until Ctrl-C; sets up what is missing
	.ci/system-packages
	.ci/bootstrap $(VENV)
	@if $(VENV)/bin/python -m pip show tmq 2>/dev/null | grep '^Editable project location:' >/dev/null; then \
		echo "make demo: using the editable install of tmq in $(VENV)"; \
	else \
		$(VENV)/bin/python -m pip install .; \
	fi
	$(VENV)/bin/tmq demo $(DEMO_ARGS)

clean: ## Remove tox envs, build output and caches (keeps .venv)
	rm -rf .tox build dist ./*.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

$(TOX):
	.ci/bootstrap $(VENV)
	$(VENV)/bin/python -m pip install 'tox>=4.14'
